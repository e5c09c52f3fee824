"""The variance and fixed-effect parameters under lme4's names, as a vector.

For a term with covariance S (k x k): sd_i = sqrt(S_ii) and cor_ij = S_ij / (sd_i sd_j), taken
column by column of the lower triangle (lme4's order: sd_x|g, then cor_y.x|g, ...), then sigma,
then the fixed effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..formula.theta_layout import tril_positions
from ..results.varcorr import sd_corr


def ran_par_names(fit, old_names: bool = False) -> list:
    """lme4's names of the variance parameters, in lme4's order: with ``old_names`` (lme4's
    oldNames = TRUE, the default of its confint) .sig01, .sig02, ... and .sigma, otherwise
    (oldNames = FALSE) sd_x|g, cor_x.y|g and sigma."""
    if old_names:
        return [f".sig{i + 1:02d}" for i in range(fit.theta.size)] + [".sigma"]
    out = []
    for t in fit.design.reterms:
        for i, j in tril_positions(t.k):
            out.append(f"sd_{t.cnames[i]}|{t.group}" if i == j else f"cor_{t.cnames[i]}.{t.cnames[j]}|{t.group}")
    return out + ["sigma"]


def parameter_vector(fit) -> pd.Series:
    """The parameters under lme4's names: sd_x|g, cor_x.y|g per term, sigma, fixed effects."""
    vals: list[float] = []
    for t, S in zip(fit.design.reterms, fit.covariances):
        sd, corr = sd_corr(S)
        vals.extend(sd[i] if i == j else corr[i, j] for i, j in tril_positions(t.k))
    vals.append(fit.sigma)
    return pd.Series(np.concatenate([vals, fit.fixef.to_numpy()]), index=ran_par_names(fit) + list(fit.fixef.index))
