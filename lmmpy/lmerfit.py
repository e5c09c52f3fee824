"""The fit users get from :func:`lmmpy.lmer`: the results layer's :class:`FittedLmm` with the
methods that run inference and print the summary attached.

It sits above the inference and display modules it calls; they read a fit but never import
this module.  (The comparison with statsmodels, which fits through :func:`lmmpy.lmer`, is
``lmmpy.compare.compare_fit(fit)``: a method here would be an import of a higher layer.)  ``refit`` (which ``anova``, profiles and
the bootstrap use) fits through the ``optimize`` function the fit was made with, passed down by
:func:`lmmpy.lmer.mk_lmer_fit`, so that no lower layer imports the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from .errors import LmmError, require_count, require_level
from .fit.deviance import LmmModel
from .fit.optimize import OptSummary
from .inference.bootstrap import confint_boot
from .inference.kenward_roger import kenward_roger_table
from .inference.predict import predict
from .inference.predict_interval import predict_with_uncertainty
from .inference.profile import confint_profile, profile
from .inference.satterthwaite import satterthwaite_table
from .inference.simulate import refit, simulate
from .inference.type3 import anova_type3
from .inference.wald import confint_wald
from .results.model import FittedLmm
from .results.summary import Summary


class LmerFit(FittedLmm):
    """A linear mixed model fitted by :func:`lmmpy.lmer` (the model is left at its optimum).

    ``optimize``: the function that fits a model (``optimize_lmer``'s signature), used by
    :meth:`refit`; :func:`lmmpy.lmer.mk_lmer_fit` passes lmmpy's."""

    def __init__(
        self,
        model: LmmModel,
        opt: OptSummary,
        data_name: str = "data",
        optimize: Callable[..., OptSummary] | None = None,
    ) -> None:
        super().__init__(model, opt, data_name=data_name)
        self.optimize = optimize

    # -- prediction and inference --------------------------------------------------------------
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        re_form: str | None = None,
        allow_new_levels: bool = False,
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ) -> pd.Series | pd.DataFrame:
        """Predictions for ``newdata`` (default: the fitting data); ``re_form``: None (all
        random effects), "~0" (none) or a formula of the terms to keep, as in lme4.

        With ``se_fit=True`` or ``interval="confidence" | "prediction"`` a DataFrame: ``fit``,
        ``se.fit`` (sqrt(x' V x), the fixed part's uncertainty from vcov) and ``lwr``/``upr``:
        fit -+ z se.fit ("confidence"), or, for a new observation ("prediction"),
        fit -+ z sqrt(x' V x + sum_t z_t' C_t z_t + sigma^2) with C_t the conditional covariance
        of a known level's random effects (lme4's condVar) and the term's covariance for a new
        level or a term re_form leaves out; z the normal quantile of ``level``.  The method in
        full: :mod:`lmmpy.inference.predict_interval`."""
        if not se_fit and interval is None:
            return predict(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels)
        return predict_with_uncertainty(
            self,
            newdata,
            re_form=re_form,
            allow_new_levels=allow_new_levels,
            se_fit=se_fit,
            interval=interval,
            level=level,
        )

    def simulate(self, nsim: int = 1, seed: Any = None) -> pd.DataFrame:
        """Responses simulated from the fitted model, one column per simulation."""
        return simulate(self, nsim, seed)

    def refit(self, new_response: Any, **kwargs: Any) -> LmerFit:
        """The same model fitted to another response."""
        return refit(self, new_response, self.optimize, **kwargs)

    def refit_ml(self) -> LmerFit:
        """The same model fitted by maximum likelihood (what anova's likelihood-ratio test compares)."""
        return self.refit(self.design.y, REML=False)

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Type III F tests of the fixed-effect terms with Satterthwaite's or Kenward-Roger's
        denominator df (lmerTest's anova)."""
        key = ddf.lower().replace("_", "-")
        if key not in ("satterthwaite", "kenward-roger"):
            raise LmmError(f"anova(ddf={ddf!r}): use 'satterthwaite' or 'kenward-roger'")
        return anova_type3(self, key)

    def profile(
        self, level: float = 0.99, n: int = 9, old_names: bool = True, progress: bool | None = None
    ) -> pd.DataFrame:
        """Profile data (.par, value, zeta) of every parameter across its profile interval;
        names as in :meth:`confint`, ``progress`` as for ``confint("profile")``."""
        return profile(self, require_level(level), require_count("n", n, 2), old_names=old_names, progress=progress)

    def kenward_roger(self) -> pd.DataFrame:
        """Fixed effects with Kenward-Roger's adjusted SEs, df and p-values (REML fits), as
        lmerTest with pbkrtest gives them."""
        return kenward_roger_table(self)

    def satterthwaite(self) -> pd.DataFrame:
        """Fixed effects with Satterthwaite's df and p-values, as lmerTest's summary gives them."""
        return satterthwaite_table(self)

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        old_names: bool = True,
        progress: bool | None = None,
        **boot: Any,
    ) -> pd.DataFrame:
        """Confidence intervals: ``"wald"`` (fixed effects), ``"profile"`` (profile likelihood,
        every parameter, as lme4) or ``"boot"`` (parametric bootstrap,
        percentile intervals for every parameter; ``nsim``, ``seed``, ``n_jobs``).
        Rows are named as lme4 names them: the variance parameters ``.sig01, .sig02, ...,
        .sigma`` (lme4's default, oldNames = TRUE) or with ``old_names=False`` ``sd_x|g``,
        ``cor_x.y|g``, ``sigma``.  ``progress`` (profile, boot): one updating line on stderr,
        True, False or None (the default: when the work will take more than a few seconds)."""
        level = require_level(level)
        method = str(method).lower()
        if boot and method != "boot":
            raise LmmError(f"confint(method={method!r}) takes no {', '.join(boot)}: they are for method='boot'")
        unknown = sorted(set(boot) - {"nsim", "seed", "n_jobs"})
        if unknown:
            raise LmmError(f"confint(method='boot') takes nsim, seed, n_jobs and progress, not {', '.join(unknown)}")
        if method == "wald":
            return confint_wald(self, level, old_names=old_names)
        if method == "profile":
            return confint_profile(self, level, old_names=old_names, progress=progress)
        if method == "boot":
            return confint_boot(self, level, progress=progress, old_names=old_names, **boot)
        raise LmmError(f"confint(method={method!r}): use 'wald', 'profile' or 'boot'")

    # -- printing --------------------------------------------------------------------------------
    def summary(self, ddf: str | None = None) -> Summary:
        """The summary as lme4 prints it; ``ddf="satterthwaite"`` or ``"kenward-roger"`` adds
        lmerTest's df and p-value columns."""
        return Summary.from_fit(self, ddf=ddf)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()
