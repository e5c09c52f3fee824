"""Wald intervals for the fixed effects: beta_j +- z_{(1+level)/2} se_j (lme4's confint(method = "Wald"))."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import require_level
from .parameters import ran_par_names


def confint_wald(fit, level: float = 0.95, old_names: bool = True) -> pd.DataFrame:
    """Wald intervals beta +- z se for the fixed effects; the variance parameters get none
    (NaN), as in lme4's ``confint(method = "Wald")``; names as :func:`ran_par_names`."""
    level = require_level(level)
    z = stats.norm.ppf(0.5 + level / 2)
    pct = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
    names = ran_par_names(fit, old_names=old_names)
    out = pd.DataFrame(np.nan, index=names + list(fit.fixef.index), columns=pct)
    out.loc[fit.fixef.index, pct[0]] = fit.fixef - z * fit.se
    out.loc[fit.fixef.index, pct[1]] = fit.fixef + z * fit.se
    return out
