"""The fit users get from :func:`lmmpy.glmer`: the results layer's :class:`FittedGlmm` with the
methods that run inference and print the summary attached (as :mod:`lmmpy.lmerfit` does for
linear models)."""

from __future__ import annotations

import pandas as pd

from .errors import LmmError, require_level
from .fit.optimize import OptSummary
from .fit.pirls import GlmmModel
from .inference.predict import predict as predict_link
from .inference.wald import confint_wald
from .results.glmm import FittedGlmm
from .results.glmm_summary import GlmmSummary


class GlmerFit(FittedGlmm):
    """A generalized linear mixed model fitted by :func:`lmmpy.glmer`."""

    def __init__(self, model: GlmmModel, opt: OptSummary, data_name: str = "data"):
        super().__init__(model, opt, data_name=data_name)

    def predict(self, newdata=None, type: str = "link", re_form=None, allow_new_levels: bool = False) -> pd.Series:
        """Predictions for ``newdata`` (default: the fitting data) on the scale of the linear
        predictor (``type="link"``, lme4's default) or of the response (``"response"``);
        ``re_form``: None (all random effects), "~0" (none) or a formula of the terms to keep,
        and ``allow_new_levels`` as in lme4."""
        if type not in ("link", "response"):
            raise LmmError(f"predict's type must be 'link' or 'response', not {type!r}")
        if newdata is None and re_form is None:
            eta = self.linear_predictor.rename("predicted")
        else:
            eta = predict_link(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels)
        if type == "response":
            return pd.Series(self.family.linkinv(eta.to_numpy()), index=eta.index, name="predicted")
        return eta

    def confint(self, method: str = "wald", level: float = 0.95, old_names: bool = True) -> pd.DataFrame:
        """Wald intervals beta +- z se for the fixed effects (lme4's ``confint(method =
        "Wald")``; the variance parameters get NaN rows, as there)."""
        level = require_level(level)
        if str(method).lower() != "wald":
            raise LmmError(f"confint(method={method!r}) of a glmer fit: 'wald' is available")
        out = confint_wald(self, level, old_names=old_names)
        if self._residual_sd is None:  # no sigma row without a dispersion (lme4's confint)
            out = out.drop(index=[".sigma", "sigma"], errors="ignore")
        return out

    # -- printing --------------------------------------------------------------------------------
    def summary(self) -> GlmmSummary:
        """The summary as lme4 prints ``summary(glmer(...))``."""
        return GlmmSummary.from_fit(self)

    def __str__(self):
        return str(self.summary())

    def _repr_html_(self):
        return self.summary()._repr_html_()
