r"""The fitted model: estimates and everything lme4 reports, computed from the factor at the optimum.

With L at the optimal theta (see :mod:`lmmpy.fit.deviance`):

- beta and the spherical random effects u solve L' [u; beta] = (last row of L)';
  the conditional modes (BLUPs) are b = Lambda u;
- sigma^2 = pwrss / n (ML) or pwrss / (n - p) (REML);
- Var(beta) = sigma^2 (R_X R_X')^{-1};
- the conditional covariance of b is sigma^2 Lambda (L_theta L_theta')^{-1} Lambda', whose
  per-level diagonal blocks lme4 reports as ``condVar``.
"""

from __future__ import annotations

import math
import warnings
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.linalg as sla

from ..errors import LmmError
from ..fit.deviance import LmmModel, ml_deviance, theta_templates
from ..fit.optimize import OptSummary, is_singular
from ..fit.status import Check, Note
from ..formula.design import ReTerm
from ..linalg.blocked import BlockedCholesky
from .varcorr import term_covariances, varcorr_frame


class FittedLmm:
    """A fitted linear mixed model: the estimates and what follows from them (lme4's fixef,
    vcov, VarCorr, ranef, fitted, residuals, logLik, AIC, BIC), computed from the model at
    its optimum.

    This is the results layer's part of a fit, with no inference and no printing: the class
    users get, :class:`lmmpy.lmerfit.LmerFit`, derives from it and attaches the methods that run
    inference (confint, profile, anova, satterthwaite, kenward_roger, predict, simulate,
    refit) and the summary, which live in higher layers.
    """

    def __init__(self, model: LmmModel, opt: OptSummary, data_name: str = "data") -> None:
        self.model = model
        assert model.design is not None, "a fit needs the model's design"
        self.design = model.design
        self.optsum = opt
        self.data_name = data_name
        self.REML = model.REML
        self.theta = np.asarray(opt.theta, dtype=float)
        L = self._factor
        self._u, beta = L.solve_u_beta()
        self._beta = beta
        n, p = self.design.n, self.design.p
        self.sigma = math.sqrt(L.pwrss / (n - p if self.REML else n))

    @property
    def _factor(self) -> BlockedCholesky:
        """The model's factor at the estimates (cached by the model)."""
        return self.model.factor(self.theta)

    # -- sizes -------------------------------------------------------------------------------
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
    def ngrps(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.design.reterms:
            out.setdefault(t.group, t.nlevels)
        return out

    @property
    def npar(self) -> int:
        """Parameters counted by logLik's df: fixed effects, theta and sigma."""
        return self.design.p + self.theta.size + 1

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    # -- fixed effects -----------------------------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self._beta, index=self.design.xnames, name="Estimate")

    @cached_property
    def vcov(self) -> pd.DataFrame:
        RX = self._factor.RX
        inv = sla.solve_triangular(RX, np.eye(RX.shape[0]), lower=True)
        V = self.sigma**2 * inv.T @ inv
        return pd.DataFrame(V, index=self.design.xnames, columns=self.design.xnames)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.design.xnames, name="Std. Error")

    bse = se

    @property
    def tvalues(self) -> pd.Series:
        return pd.Series(self._beta / self.se.to_numpy(), index=self.design.xnames, name="t value")

    # -- criteria ----------------------------------------------------------------------------
    @property
    def objective(self) -> float:
        """lme4's criterion: the REML criterion (REML fits) or the deviance (ML fits)."""
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
    def deviance(self) -> float:
        """-2 log-likelihood (ML); for a REML fit, evaluated at the REML estimates
        (lme4's ``deviance(fit, REML = FALSE)``)."""
        return float(ml_deviance(self._factor, self.nobs, self.model.log_w_sum))

    # -- random effects ------------------------------------------------------------------------
    @property
    def theta_scale(self) -> np.ndarray:
        """c with theta_internal = c * theta: the theta of the rescaled columns the model was
        fitted on (:mod:`lmmpy.fit.scaling`), all ones for a model fitted on its own.  Steps and
        tolerances in theta (the singular tolerance, finite differences) are meant there."""
        scaling = self.optsum.scaling
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
        return varcorr_frame([t.group for t in terms], [t.cnames for t in terms], self.covariances, self.sigma)

    def _per_term(self, vec: np.ndarray) -> list[np.ndarray]:
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

    def _by_group(self, arrays: list[np.ndarray]) -> dict[str, pd.DataFrame]:
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
        out: dict[str, list[np.ndarray]] = {}
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

    # -- fitted values and residuals ------------------------------------------------------------
    @cached_property
    def fitted(self) -> pd.Series:
        eta = self.design.X @ self._beta
        if self.design.offset is not None:
            eta = eta + self.design.offset
        for t, b in zip(self.design.reterms, self._b_terms):
            eta = eta + np.einsum("nk,nk->n", t.X, b[t.codes])
        return pd.Series(eta, index=self.design.row_index, name="fitted")

    def residuals(self, type: str = "response", scaled: bool = False) -> pd.Series:
        """``y - fitted`` ("response") or Pearson residuals ``sqrt(w) (y - fitted)``;
        ``scaled`` divides by sigma."""
        if type not in ("response", "pearson"):
            raise LmmError(f"residuals' type must be 'response' or 'pearson', not {type!r}")
        r = self.design.y - self.fitted.to_numpy()
        if type == "pearson" and self.design.weights is not None:
            r = r * np.sqrt(self.design.weights)
        if scaled:
            r = r / self.sigma
        return pd.Series(r, index=self.design.row_index, name="residuals")

    def residual_quantiles(self) -> tuple:
        """(Min, 1Q, Median, 3Q, Max of the scaled Pearson residuals, None): the summary's,
        computed exactly (a fit whose rows are elsewhere says how it computed them instead of None)."""
        r = self.residuals("pearson", scaled=True).to_numpy()
        return np.quantile(r, [0, 0.25, 0.5, 0.75, 1]), None

    # -- ICC -------------------------------------------------------------------------------------
    def icc(self) -> pd.Series:
        """Intraclass correlation per grouping factor: tau_g^2 / (sum of tau^2 + sigma^2),
        with tau_g^2 the variance of g's random intercept.

        In models with random slopes the intercept variances are those at x = 0, so the ICC
        is the correlation of two observations of a group whose covariates are all zero.
        Factors without a random intercept are left out of the numerator but not needed in
        the denominator either."""
        taus: dict[str, float] = {}
        for t, S in zip(self.design.reterms, self.covariances):
            if "(Intercept)" in t.cnames:
                i = t.cnames.index("(Intercept)")
                taus[t.group] = taus.get(t.group, 0.0) + S[i, i]
        total = sum(taus.values()) + self.sigma**2
        return pd.Series({g: v / total for g, v in taus.items()}, name="ICC", dtype=float)

    def __repr__(self) -> str:
        kind = "REML" if self.REML else "ML"
        return f"<{type(self).__name__} {self.formula!r} ({kind}), n={self.nobs}, criterion={self.objective:.4f}>"

    def _warn(self) -> None:
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


class SingularFitWarning(UserWarning):
    """A variance parameter is on its boundary (lme4's 'boundary (singular) fit')."""


class ConvergenceWarning(UserWarning):
    """The optimizer reported a problem."""


def ranef_frames(terms: list[ReTerm], arrays: list[np.ndarray]) -> dict[str, pd.DataFrame]:
    """Gather per-term arrays (levels x k) into one DataFrame per grouping factor, as
    lme4's ranef() does for ``(1 | g) + (0 + x | g)``."""
    out: dict[str, pd.DataFrame] = {}
    for t, a in zip(terms, arrays):
        df = pd.DataFrame(a, index=pd.Index(t.levels, name=t.group), columns=t.cnames)
        out[t.group] = df if t.group not in out else pd.concat([out[t.group], df], axis=1)
    return out
