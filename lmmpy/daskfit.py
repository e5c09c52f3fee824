"""The fit users get from :func:`lmmpy.lmer` on a Dask DataFrame.

It is an :class:`lmmpy.lmerfit.LmerFit` whose model was built from the partitions'
cross-products (:mod:`lmmpy.fit.partitions`): everything that reads the model alone is the
same as for pandas data -- the criterion, fixef, vcov, varcorr, ranef with conditional
variances, logLik/AIC/BIC, confint("wald"), Satterthwaite's df, anova's likelihood-ratio test
(an ML refit reuses the cross-products) -- and what reads the rows is a pass over the
partitions (:mod:`lmmpy.inference.partition_passes`): fitted, residuals and predict return
Dask Series; the summary's residual quantiles come from one more pass.

What would need the rows many times -- a refit to another response, simulate, the parametric
bootstrap, profiles (each fixed-effect profile point refits with an offset), Kenward-Roger's
adjustment and the type III tests (they read the model matrices) -- raises an LmmError that
says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import LmmError
from .fit.deviance import LmmModel
from .formula.partition import PartitionedDesign
from .fit.optimize import OptSummary
from .inference.partition_passes import (
    RowPass,
    fitted_series,
    predict_series,
    residual_quantiles,
    residual_series,
)
from .lmerfit import LmerFit
from .results.summary import Summary

if TYPE_CHECKING:  # dask is imported only when Dask data are fitted
    from dask.dataframe import Series as DaskSeries


def _needs_rows(what: str, why: str) -> LmmError:
    return LmmError(
        f"{what} is not available for a fit to Dask data: {why}, and the rows are in the partitions, "
        "not in memory; fit a pandas DataFrame (or a sample of the data) for it"
    )


class DaskLmerFit(LmerFit):
    """A linear mixed model fitted by :func:`lmmpy.lmer` to a Dask DataFrame ``data``."""

    def __init__(self, model: LmmModel, opt: OptSummary, data, data_name: str = "data", optimize=None):
        super().__init__(model, opt, data_name=data_name, optimize=optimize)
        self.data = data
        self._quantiles: tuple | None = None

    def _row_pass(self) -> RowPass:
        assert isinstance(self.design, PartitionedDesign)
        return RowPass(self.design, self.fixef, self.b_terms, self.sigma)

    # -- the rows, one pass each ------------------------------------------------------------------
    @property
    def fitted(self) -> DaskSeries:
        """The fitted values of the complete rows: a Dask Series (lazy; ``.compute()`` it)."""
        return fitted_series(self._row_pass(), self.data)

    def residuals(self, type: str = "response", scaled: bool = False) -> DaskSeries:
        """``y - fitted`` ("response") or ``sqrt(w) (y - fitted)`` ("pearson"), divided by sigma
        if ``scaled``: a Dask Series."""
        if type not in ("response", "pearson"):
            raise LmmError(f"residuals' type must be 'response' or 'pearson', not {type!r}")
        return residual_series(self._row_pass(), self.data, type, scaled)

    def predict(
        self,
        newdata: Any = None,
        re_form: str | None = None,
        allow_new_levels: bool = False,
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ) -> DaskSeries | pd.Series:
        """Predictions for ``newdata``: a Dask Series for Dask data (default: the fitting data),
        a pandas Series for a pandas DataFrame.  Standard errors and intervals are not
        available for a fit on Dask data."""
        if se_fit or interval is not None:
            raise LmmError(
                "predict(se_fit=, interval=) is not available for a fit on Dask data: the conditional "
                "covariances of the random effects need the rows of the new data"
            )
        rp = self._row_pass()
        if newdata is None:
            if re_form is None:
                return self.fitted.rename("predicted")
            newdata = self.data
        if isinstance(newdata, pd.DataFrame):
            return rp.predict(newdata, re_form, allow_new_levels)
        return predict_series(rp, newdata, re_form, allow_new_levels)

    def residual_quantiles(self) -> tuple:
        """The scaled Pearson residuals' quantiles (one pass; kept) and how they were computed."""
        if self._quantiles is None:
            self._quantiles = residual_quantiles(self.residuals("pearson", scaled=True), self.nobs)
        return tuple(self._quantiles)

    # -- what the cross-products give -------------------------------------------------------------
    def refit_ml(self) -> DaskLmerFit:
        """The model fitted by ML on the same cross-products (no pass over the data)."""
        model = self.model.with_reml(False)
        assert self.optimize is not None  # lmer() passes its optimizer
        opt = self.optimize(model, start=self.theta)
        return DaskLmerFit(model, opt, self.data, data_name=self.data_name, optimize=self.optimize)

    def summary(self, ddf=None) -> Summary:
        if ddf is not None and str(ddf).lower().replace("_", "-") in ("kenward-roger", "kr"):
            self.kenward_roger()
        return super().summary(ddf)

    # -- what would need the rows many times ------------------------------------------------------
    def refit(self, new_response, **kwargs) -> LmerFit:
        raise _needs_rows("refit()", "a new response changes every product with y")

    def simulate(self, nsim: int = 1, seed=None) -> pd.DataFrame:
        raise _needs_rows("simulate()", "each simulated response is a column of n values")

    def profile(self, *args, **kwargs) -> pd.DataFrame:
        raise _needs_rows("profile()", "the fixed effects' profiles refit the model with an offset at every point")

    def kenward_roger(self) -> pd.DataFrame:
        raise _needs_rows("Kenward-Roger's adjustment", "it needs the model matrices of the rows")

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        raise _needs_rows(
            "anova() of one fit (type III tests)", "the tests' contrasts are read from the rows' model matrix"
        )

    def confint(
        self, method: str = "wald", level: float = 0.95, old_names: bool = True, progress=None, **boot
    ) -> pd.DataFrame:
        m = str(method).lower()
        if m == "profile":
            raise _needs_rows('confint("profile")', "the fixed effects' profiles refit the model at every point")
        if m == "boot":
            raise _needs_rows('confint("boot")', "every bootstrap sample is a new response of n values, refitted")
        return super().confint(method, level, old_names=old_names, progress=progress, **boot)
