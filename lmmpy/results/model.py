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
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.linalg as sla

from ..errors import LmmError
from ..fit.deviance import LmmModel, ml_deviance
from ..fit.optimize import OptSummary
from .mixed import ConvergenceWarning, FittedMixedModel, SingularFitWarning, ranef_frames  # noqa: F401 (re-exported)
from ..linalg.blocked import BlockedCholesky


class FittedLmm(FittedMixedModel):
    """A fitted linear mixed model: the estimates and what follows from them (lme4's fixef,
    vcov, VarCorr, ranef, fitted, residuals, logLik, AIC, BIC), computed from the model at
    its optimum.

    This is the results layer's part of a fit, with no inference and no printing: the class
    users get, :class:`lmmpy.lmerfit.LmerFit`, derives from it and attaches the methods that run
    inference (confint, profile, anova, satterthwaite, kenward_roger, predict, simulate,
    refit) and the summary, which live in higher layers.
    """

    def __init__(self, model: LmmModel, opt: OptSummary, data_name: str = "data") -> None:
        super().__init__(model, opt, data_name=data_name)
        self.REML = model.REML
        L = self._factor
        self._u, beta = L.solve_u_beta()
        self._beta = beta
        n, p = self.design.n, self.design.p
        self.sigma = math.sqrt(L.pwrss / (n - p if self.REML else n))

    @property
    def _factor(self) -> BlockedCholesky:
        """The model's factor at the estimates (cached by the model)."""
        return self.model.factor(self.theta)

    @property
    def n_scale_parameters(self) -> int:
        return 1  # sigma

    # -- fixed effects -----------------------------------------------------------------------
    @cached_property
    def vcov(self) -> pd.DataFrame:
        RX = self._factor.RX
        inv = sla.solve_triangular(RX, np.eye(RX.shape[0]), lower=True)
        V = self.sigma**2 * inv.T @ inv
        return pd.DataFrame(V, index=self.design.xnames, columns=self.design.xnames)

    @property
    def tvalues(self) -> pd.Series:
        return pd.Series(self._beta / self.se.to_numpy(), index=self.design.xnames, name="t value")

    # -- criteria ----------------------------------------------------------------------------
    @property
    def deviance(self) -> float:
        """-2 log-likelihood (ML); for a REML fit, evaluated at the REML estimates
        (lme4's ``deviance(fit, REML = FALSE)``)."""
        return float(ml_deviance(self._factor, self.nobs, self.model.log_w_sum))

    # -- fitted values and residuals ------------------------------------------------------------
    @cached_property
    def fitted(self) -> pd.Series:
        return pd.Series(self._linear_predictor(), index=self.design.row_index, name="fitted")

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
