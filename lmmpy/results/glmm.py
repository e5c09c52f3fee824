r"""A fitted generalized linear mixed model: lme4's glmer results, computed at the optimum.

At (theta, beta) with the conditional modes u* (PIRLS, :mod:`lmmpy.fit.pirls`), eta = offset +
X beta + Z Lambda u*, mu = g^{-1}(eta), the family's variance V and the prior weights w:

- ``loglik`` = -D / 2 with D the optimised deviance (Laplace: aic + ||u*||^2 + log|L|^2; for
  nAGQ > 1 lme4's quadrature deviance, see :mod:`lmmpy.fit.pirls`);
- ``deviance`` = sum of the squared deviance residuals (lme4's ``deviance()`` of a glmer fit,
  the conditional deviance; the summary's "deviance" column is -2 logLik instead);
- ``vcov``: lme4's default, from the finite-difference Hessian H of D over (theta, beta): the
  beta block of 2 H^{-1}; where that is not positive definite, from the factor,
  sigma^2 (R_X R_X')^{-1} at the converged working weights, with lme4's warning;
- residuals: response y - mu; Pearson (y - mu) sqrt(w / V(mu)); deviance sign(y - mu) sqrt(d_i);
  working (y - mu) / mu_eta;
- sigma: 1 for binomial and Poisson; for families with a dispersion lme4's
  sqrt(pwrss / n), pwrss = sum w (y - mu)^2 / V(mu) + ||u*||^2.
"""

from __future__ import annotations

import math
import warnings
from functools import cached_property
from typing import Optional

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import stats

from ..errors import LmmError
from ..fit.optimize import OptSummary
from ..fit.pirls import GlmmModel
from .mixed import ConvergenceWarning, FittedMixedModel

VCOV_FALLBACK_MESSAGE = (
    "variance-covariance matrix computed from finite-difference Hessian is\n"
    "not positive definite or contains NA values: falling back to var-cov estimated from RX"
)

# the latent-scale residual variance of each binomial link (the performance package's)
LATENT_VARIANCE = {"logit": math.pi**2 / 3.0, "probit": 1.0, "cloglog": math.pi**2 / 6.0}


class FittedGlmm(FittedMixedModel):
    """A fitted generalized linear mixed model (the results layer's part of a glmer fit: no
    inference and no printing; :class:`lmmpy.glmerfit.GlmerFit` adds those)."""

    REML = False  # glmer fits are maximum likelihood fits

    def __init__(self, model: GlmmModel, opt: OptSummary, data_name: str = "data"):
        super().__init__(model, opt, data_name=data_name)
        self.family = model.family
        self.nAGQ = model.nAGQ
        self._beta = np.asarray(opt.beta, dtype=float)
        res = model.pirls(self.theta, self._beta)
        self._pirls = res
        self._u = res.u
        self._mu, self._eta = res.mu, res.eta
        if self.family.has_dispersion:
            pwrss = float(np.sum(model.wt * (model.y - res.mu) ** 2 / self.family.variance(res.mu)) + res.u @ res.u)
            self.sigma = math.sqrt(pwrss / self.nobs)
        else:
            self.sigma = 1.0
        self.vcov_warning: Optional[str] = None
        self.vcov_source = "hessian"

    @property
    def _factor(self):
        """The factor of Lambda'Z'WZLambda + I (and R_X) at the converged working weights."""
        return self._pirls.factor

    @property
    def _residual_sd(self):
        return self.sigma if self.family.has_dispersion else None

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_scale_parameters(self) -> int:
        return int(self.family.has_dispersion)

    # -- fixed effects -----------------------------------------------------------------------
    @cached_property
    def vcov(self) -> pd.DataFrame:
        """lme4's vcov of a glmer fit: from the Hessian over (theta, beta) where it is positive
        definite, else from R_X (``vcov_source`` says which)."""
        names = self.design.xnames
        V, self.vcov_source = None, "hessian"
        H = self.optsum.hessian
        nt = self.theta.size
        if H is not None and np.all(np.isfinite(H)):
            try:
                Vh = 2.0 * np.linalg.inv(H)
                Vh = (Vh + Vh.T) / 2.0
                if np.all(np.isfinite(Vh)) and np.linalg.eigvalsh(Vh).min() > 0:
                    V = Vh[nt:, nt:]
            except np.linalg.LinAlgError:
                V = None
        if V is None:
            self.vcov_source = "RX"
            if H is not None:
                self.vcov_warning = VCOV_FALLBACK_MESSAGE
            V = self.vcov_rx.to_numpy()
        return pd.DataFrame(V, index=names, columns=names)

    @cached_property
    def vcov_rx(self) -> pd.DataFrame:
        """sigma^2 (R_X R_X')^{-1} from the factor at the converged weights (lme4's
        ``vcov(fit, use.hessian = FALSE)``)."""
        RX = self._factor.RX
        inv = sla.solve_triangular(RX, np.eye(RX.shape[0]), lower=True)
        V = self.sigma**2 * inv.T @ inv
        return pd.DataFrame(V, index=self.design.xnames, columns=self.design.xnames)

    @property
    def zvalues(self) -> pd.Series:
        return pd.Series(self._beta / self.se.to_numpy(), index=self.design.xnames, name="z value")

    @property
    def pvalues(self) -> pd.Series:
        """Pr(>|z|) of the Wald z statistics."""
        return pd.Series(
            2.0 * stats.norm.sf(np.abs(self.zvalues.to_numpy())), index=self.design.xnames, name="Pr(>|z|)"
        )

    # -- criteria ----------------------------------------------------------------------------
    @property
    def deviance(self) -> float:
        """lme4's ``deviance()`` of a glmer fit: the sum of squared deviance residuals."""
        return float(np.sum(self.model.dev_resids(self._mu)))

    # -- fitted values and residuals ------------------------------------------------------------
    @property
    def linear_predictor(self) -> pd.Series:
        """eta = offset + X beta + Z b (lme4's ``predict(fit, type = "link")``)."""
        return pd.Series(self._eta, index=self.design.row_index, name="eta")

    @property
    def fitted(self) -> pd.Series:
        """mu = g^{-1}(eta), on the response scale (lme4's ``fitted()``)."""
        return pd.Series(self._mu, index=self.design.row_index, name="fitted")

    def residuals(self, type: str = "deviance", scaled: bool = False) -> pd.Series:
        """lme4's residuals of a glmer fit: "deviance" (the default), "pearson", "response" or
        "working"; ``scaled`` divides by sigma."""
        m, mu, y = self.model, self._mu, self.model.y
        if type == "deviance":
            r = np.sign(y - mu) * np.sqrt(np.maximum(m.dev_resids(mu), 0.0))
        elif type == "pearson":
            r = (y - mu) * np.sqrt(m.wt / self.family.variance(mu))
        elif type == "response":
            r = y - mu
        elif type == "working":
            r = (y - mu) / self.family.mu_eta(self._eta)
        else:
            raise LmmError(f"residuals' type must be 'deviance', 'pearson', 'response' or 'working', not {type!r}")
        if scaled:
            r = r / self.sigma
        return pd.Series(r, index=self.design.row_index, name="residuals")

    # -- ICC -------------------------------------------------------------------------------------
    def icc(self) -> pd.Series:
        """Intraclass correlation per grouping factor on the latent scale, as the performance
        package reports it for a binomial model: tau_g^2 / (sum of tau^2 + s^2) with s^2 the
        link's latent residual variance (pi^2 / 3 logit, 1 probit, pi^2 / 6 cloglog) and
        tau_g^2 the variance of g's random intercept."""
        link = self.family.link_name
        if self.family.family != "binomial" or link not in LATENT_VARIANCE:
            raise LmmError(
                f"icc() is defined on the latent scale of a binomial model with a logit, probit or "
                f"cloglog link, not of the {self.family.family} family with the {link} link"
            )
        taus: dict = {}
        for t, S in zip(self.design.reterms, self.covariances):
            if "(Intercept)" in t.cnames:
                i = t.cnames.index("(Intercept)")
                taus[t.group] = taus.get(t.group, 0.0) + S[i, i]
        total = sum(taus.values()) + LATENT_VARIANCE[link]
        return pd.Series({g: v / total for g, v in taus.items()}, name="ICC", dtype=float)

    def __repr__(self):
        fam = f"{self.family.family}({self.family.link_name})"
        return f"<{type(self).__name__} {self.formula!r} {fam}, n={self.nobs}, -2logLik={self.objective:.4f}>"

    def _warn(self):
        super()._warn()
        self.vcov  # lme4 warns about the fallback when the fit is made (summary, vcov)
        if self.vcov_warning:
            warnings.warn(self.vcov_warning, ConvergenceWarning, stacklevel=3)
