"""The fit users get from :func:`lmmpy.glmer`: the results layer's :class:`FittedGlmm` with the
methods that run inference and print the summary attached (as :mod:`lmmpy.lmerfit` does for
linear models)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .errors import LmmError, require_count, require_level
from .fit.glmm_driver import GlmerControl
from .fit.optimize import OptSummary
from .fit.pirls import GlmmModel
from .inference.glmm_profile import confint_profile_glmm, profile_glmm
from .inference.bootstrap import percentile_intervals
from .inference.glmm_simulate import bootstrap_glmm, glmm_parameter_names, refit_glmm, simulate_glmm
from .inference.predict import predict as predict_link
from .inference.wald import confint_wald
from .results.glmm import FittedGlmm
from .results.glmm_summary import GlmmSummary


class GlmerFit(FittedGlmm):
    """A generalized linear mixed model fitted by :func:`lmmpy.glmer`."""

    def __init__(self, model: GlmmModel, opt: OptSummary, data_name: str = "data", control: Any = None):
        super().__init__(model, opt, data_name=data_name)
        self.control = GlmerControl.coerce(control)  # what refits and profiles run with

    def simulate(self, nsim: int = 1, seed: Any = None) -> pd.DataFrame:
        """Responses drawn from the fitted model as lme4's ``simulate()`` draws them: new random
        effects from the fitted covariance, then the family at the conditional means (see
        :mod:`lmmpy.inference.glmm_simulate`); one column ``sim_i`` per simulation, two
        (successes, failures) for a ``cbind()`` response."""
        return simulate_glmm(self, nsim, seed)

    def refit(self, new_response: Any, control: Any = None) -> "GlmerFit":
        """The same model (design, family, nAGQ, control, start) fitted to another response: one
        value per row of the fit, or for a ``cbind()`` fit two columns (successes, failures),
        e.g. a simulation of :meth:`simulate` (``sims["sim_1"]``).  ``control``: another
        :class:`GlmerControl` (or dict) for the refit (default: the fit's)."""
        control = self.control if control is None else GlmerControl.coerce(control)
        model, opt = refit_glmm(self, new_response, control)
        return type(self)(model, opt, data_name=self.data_name, control=control)

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

    def profile(self, level: float = 0.99, n: int = 9, old_names: bool = True, progress: Any = None) -> pd.DataFrame:
        """Profile data (.par, value, zeta) of every parameter across its ``level`` profile
        interval, as lme4's ``profile()`` of a glmer fit (:mod:`lmmpy.inference.glmm_profile`)."""
        return profile_glmm(
            self, require_level(level), require_count("n", n, 2), old_names=old_names, progress=progress
        )

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        old_names: bool = True,
        progress: Any = None,
        **boot: Any,
    ) -> pd.DataFrame:
        """Confidence intervals: ``"wald"``, beta +- z se for the fixed effects (lme4's
        ``confint(method = "Wald")``; the variance parameters get NaN rows, as there);
        ``"profile"``, profile-likelihood intervals of the variance parameters (sd and cor) and
        the fixed effects (lme4's default ``confint()``); or ``"boot"``, percentile intervals of
        the parametric bootstrap (``nsim`` = 500, ``seed``, ``n_jobs``; lme4's ``method =
        "boot"``).  Rows are named as lme4 names them: ``.sig01, ...`` (old_names, lme4's
        default) or ``sd_x|g``, then the fixed effects."""
        level = require_level(level)
        key = str(method).lower()
        if boot and key != "boot":
            raise LmmError(f"confint(method={method!r}) takes no {', '.join(boot)}: they are for method='boot'")
        if key == "boot":
            unknown = sorted(set(boot) - {"nsim", "seed", "n_jobs"})
            if unknown:
                raise LmmError(
                    f"confint(method='boot') takes nsim, seed, n_jobs and progress, not {', '.join(unknown)}"
                )
            draws = bootstrap_glmm(self, progress=progress, **boot)
            return percentile_intervals(draws, level, glmm_parameter_names(self, old_names=old_names))
        if key == "profile":
            return confint_profile_glmm(self, level, old_names=old_names, progress=progress)
        if key != "wald":
            raise LmmError(f"confint(method={method!r}) of a glmer fit: 'wald', 'profile' or 'boot'")
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
