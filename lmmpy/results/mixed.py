r"""What every fitted mixed model reports in the same sense, linear (:mod:`lmmpy.results.model`)
or generalized (:mod:`lmmpy.results.glmm`).

A fit holds its design, its optimizer record (``optsum``), theta, the fixed effects beta and the
spherical random effects u at the optimum, and the blocked factor L of
Lambda' Z' W Z Lambda + I (W the prior weights of a linear model, the working weights at
convergence of a generalized one).  From these, with s the scale of the random effects (sigma
for a linear model, 1 or the dispersion's square root for a generalized one):

- the conditional modes b = Lambda u, per term a (levels x k) array;
- each term's covariance s^2 T T' (T its template) and lme4's VarCorr table;
- the conditional covariances s^2 T C_j T', C_j the per-level diagonal blocks of (L L')^{-1}
  (lme4's ``condVar``).

What differs (sigma, vcov, the criteria, fitted values and residuals) is the subclasses'.
"""

from __future__ import annotations

import math
import warnings
from functools import cached_property

import numpy as np
import pandas as pd

from ..fit.checks import is_singular
from ..fit.status import Check, Note
from ..formula.theta_layout import theta_templates
from .varcorr import term_covariances, varcorr_frame


class SingularFitWarning(UserWarning):
    """A variance parameter is on its boundary (lme4's 'boundary (singular) fit')."""


class ConvergenceWarning(UserWarning):
    """The optimizer reported a problem."""


class FittedMixedModel:
    """The part of a fitted mixed model whose meaning does not depend on the response's family.

    Subclasses set ``_u`` (spherical random effects), ``_beta`` (fixed effects) and ``sigma``
    (the scale of the random effects' covariances), and provide ``_factor`` (the blocked
    factor at the estimates) and ``vcov``.  ``model`` must give ``lower``, ``ks`` and
    ``sizes`` (the theta bounds and the terms' shapes)."""

    _u: np.ndarray
    _beta: np.ndarray
    sigma: float

    def __init__(self, model, opt, data_name: str = "data"):
        self.model = model
        self.design = model.design
        self.optsum = opt
        self.data_name = data_name
        self.theta = np.asarray(opt.theta, dtype=float)

    @property
    def _factor(self):
        raise NotImplementedError

    @property
    def vcov(self) -> pd.DataFrame:
        raise NotImplementedError

    @property
    def _residual_sd(self):
        """The residual standard deviation VarCorr reports, or None for none (binomial, Poisson)."""
        return self.sigma

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_scale_parameters(self) -> int:
        """Scale parameters beside beta and theta (sigma of an LMM, a GLMM family's dispersion)."""
        raise NotImplementedError

    @property
    def npar(self) -> int:
        """Parameters counted by logLik's df: fixed effects, theta and the scale parameters."""
        return self.design.p + self.theta.size + self.n_scale_parameters

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    # -- criteria ----------------------------------------------------------------------------
    @property
    def objective(self) -> float:
        """The optimised criterion: lme4's REML criterion or ML deviance (lmer), -2 logLik (glmer)."""
        return float(self.optsum.fmin)

    @property
    def loglik(self) -> float:
        return -self.objective / 2.0

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.npar

    @property
    def formula(self) -> str:
        return self.design.formula.text

    @property
    def nobs(self) -> int:
        return self.design.n

    @property
    def n_dropped(self) -> int:
        """Rows dropped because a variable of the model was missing."""
        return self.design.n_dropped

    @property
    def ngrps(self) -> dict:
        out: dict = {}
        for t in self.design.reterms:
            out.setdefault(t.group, t.nlevels)
        return out

    # -- fixed effects -----------------------------------------------------------------------
    @property
    def beta(self) -> np.ndarray:
        """The fixed effects as an array (the values of :attr:`fixef`)."""
        return self._beta.copy()

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self._beta, index=self.design.xnames, name="Estimate")

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.design.xnames, name="Std. Error")

    @property
    def bse(self) -> pd.Series:
        """The standard errors (statsmodels' name)."""
        return self.se

    # -- random effects ------------------------------------------------------------------------
    @property
    def theta_scale(self) -> np.ndarray:
        """c with theta_internal = c * theta: the theta of the rescaled columns the model was
        fitted on (:mod:`lmmpy.fit.scaling`), all ones for a model fitted on its own.  Steps and
        tolerances in theta (the singular tolerance, finite differences) are meant there."""
        scaling = getattr(self.optsum, "scaling", None)
        return np.ones(self.theta.size) if scaling is None else scaling.theta_factor

    @property
    def is_singular(self) -> bool:
        return is_singular(self.theta * self.theta_scale, self.model.lower)

    @cached_property
    def templates(self) -> list:
        return theta_templates(self.theta, self.model.ks)

    @cached_property
    def covariances(self) -> list:
        """Each term's covariance matrix sigma^2 T T' (k x k)."""
        return term_covariances(self.templates, self.sigma)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))``: grp, var1, var2, vcov, sdcor."""
        terms = self.design.reterms
        return varcorr_frame([t.group for t in terms], [t.cnames for t in terms], self.covariances, self._residual_sd)

    def _per_term(self, vec):
        out, pos = [], 0
        for t in self.design.reterms:
            out.append(vec[pos : pos + t.q].reshape(t.nlevels, t.k))
            pos += t.q
        return out

    @cached_property
    def _b_terms(self) -> list:
        """Conditional modes b = Lambda u, one (levels x k) array per term."""
        return [u @ T.T for u, T in zip(self._per_term(self._u), self.templates)]

    @cached_property
    def _condvar_terms(self) -> list:
        """sigma^2 T C_j T' for each level j, with C_j the diagonal blocks of (L L')^{-1}."""
        blocks = self._factor.cond_cov_blocks(self.model.sizes)
        return [self.sigma**2 * np.einsum("ij,ljk,mk->lim", T, C, T) for T, C in zip(self.templates, blocks)]

    def _by_group(self, arrays) -> dict:
        return ranef_frames(self.design.reterms, arrays)

    @property
    def ranef(self) -> dict:
        """Conditional modes of the random effects: group -> DataFrame (levels x terms)."""
        return self._by_group(self._b_terms)

    @property
    def ranef_sd(self) -> dict:
        """Conditional standard deviations of the random effects (lme4's condsd)."""
        return self._by_group([np.sqrt(np.diagonal(v, axis1=1, axis2=2)) for v in self._condvar_terms])

    def ranef_condvar(self) -> dict:
        """group -> list per term of (levels, k, k) conditional covariance arrays."""
        out: dict = {}
        for t, v in zip(self.design.reterms, self._condvar_terms):
            out.setdefault(t.group, []).append(v)
        return out

    @property
    def b_terms(self) -> list:
        """The conditional modes per random-effects term, lmmpy's order: one (levels x k)
        array each (what :attr:`ranef` gathers by grouping factor)."""
        return self._b_terms

    @property
    def condvar_terms(self) -> list:
        """The conditional covariances per random-effects term: one (levels, k, k) array each
        (what :attr:`ranef_sd` and :meth:`ranef_condvar` read)."""
        return self._condvar_terms

    def _linear_predictor(self) -> np.ndarray:
        """eta = X beta + offset + Z b on the fitting rows."""
        eta = self.design.X @ self._beta
        if self.design.offset is not None:
            eta = eta + self.design.offset
        for t, b in zip(self.design.reterms, self._b_terms):
            eta = eta + np.einsum("nk,nk->n", t.X, b[t.codes])
        return eta

    def _warn(self):
        """Warnings as lme4 gives them at the end of a fit."""
        for note in self.optsum.fit_notes:
            if note.kind is Note.EM_FALLBACK:
                warnings.warn(str(note), ConvergenceWarning, stacklevel=3)
        for finding in self.optsum.findings:
            kind = SingularFitWarning if finding.kind is Check.BOUNDARY else ConvergenceWarning
            warnings.warn(str(finding), kind, stacklevel=3)
        if not self.optsum.converged:
            warnings.warn(
                f"the {self.optsum.optimizer} fit did not converge: {self.optsum.message}",
                ConvergenceWarning,
                stacklevel=3,
            )


def ranef_frames(terms, arrays) -> dict:
    """Gather per-term arrays (levels x k) into one DataFrame per grouping factor, as
    lme4's ranef() does for ``(1 | g) + (0 + x | g)``."""
    out: dict = {}
    for t, a in zip(terms, arrays):
        df = pd.DataFrame(a, index=pd.Index(t.levels, name=t.group), columns=t.cnames)
        out[t.group] = df if t.group not in out else pd.concat([out[t.group], df], axis=1)
    return out
