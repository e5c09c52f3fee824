r"""Standard errors and intervals of predictions of a linear mixed model on new data.

For a row with fixed-effects row x and, for each random-effects term t, the term's model
matrix row z_t, the prediction is y-hat = x' beta-hat + sum_t z_t' b_t (b_t the conditional
mode of the row's level for a term that ``re_form`` keeps and whose level the fit knows, else 0).

- ``se.fit`` = sqrt(x' V x), V = vcov(beta-hat): the uncertainty of the fixed part only.
- ``interval="confidence"``: y-hat -+ z_{(1+level)/2} se.fit (normal quantiles).
- ``interval="prediction"`` (a new observation of the row): y-hat -+ z_{(1+level)/2} s with

      s^2 = x' V x + sum_t z_t' C_t z_t + sigma^2,

  where C_t is the conditional covariance of the level's random effects given the data
  (lme4's ``condVar``: sigma^2 T (L L')^{-1}_jj T') for a kept term and a known level, and the
  term's covariance Sigma_t (the random effect drawn anew) for a new level or a term that
  ``re_form`` leaves out.  The parts are added as independent: the covariance of beta-hat with
  the conditional modes is left out (as merTools' predictInterval does), and new rows have prior
  weight 1 (residual variance sigma^2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError, require_bool, require_level
from .predict import linear_parts, prepared_rows, term_matrix

INTERVALS = ("none", "confidence", "prediction")


def predict_with_uncertainty(
    fit, newdata=None, re_form=None, allow_new_levels=False, se_fit=False, interval="none", level=0.95
) -> pd.DataFrame:
    """``fit`` (the prediction), ``se.fit`` (with ``se_fit``) and ``lwr``/``upr`` (with an
    ``interval``), one row per row of ``newdata`` (NaN where a covariate is missing)."""
    se_fit = require_bool("se_fit", se_fit)
    interval = "none" if interval is None else str(interval).lower()
    if interval not in INTERVALS:
        raise LmmError(f"interval={interval!r}: use 'confidence' or 'prediction' (or None)")
    level = require_level(level)
    if getattr(fit, "family", None) is not None:
        raise LmmError("se_fit and intervals of predictions are for lmer fits")
    terms_all = range(len(fit.design.reterms))
    extra = terms_all if interval == "prediction" else ()
    newdata, rows, labels = prepared_rows(fit, newdata, re_form, allow_new_levels, extra_terms=extra)
    if newdata is None:
        newdata = fit.design.frame
        newdata, rows, labels = prepared_rows(fit, newdata, None, allow_new_levels, extra_terms=extra)
    n = len(newdata)
    cols = {"fit": np.full(n, np.nan), "se.fit": np.full(n, np.nan), "var.pred": np.full(n, np.nan)}
    if rows.size:
        sub = newdata.iloc[rows]
        eta, X, parts = linear_parts(fit, sub, {i: [lv[r] for r in rows] for i, lv in labels.items()})
        V = fit.vcov.to_numpy()
        var_fixed = np.einsum("ij,jk,ik->i", X, V, X)
        cols["fit"][rows] = eta
        cols["se.fit"][rows] = np.sqrt(var_fixed)
        if interval == "prediction":
            var = var_fixed + fit.sigma**2
            for i in terms_all:
                t, Sigma = fit.design.reterms[i], fit.covariances[i]
                Xr, codes = parts[i] if i in parts else (term_matrix(t, sub), np.full(len(sub), -1))
                C = np.broadcast_to(Sigma, (len(sub), t.k, t.k)).copy()
                known = codes >= 0
                C[known] = fit.condvar_terms[i][codes[known]]
                var = var + np.einsum("nk,nkl,nl->n", Xr, C, Xr)
            cols["var.pred"][rows] = var
    out = pd.DataFrame({"fit": cols["fit"]}, index=newdata.index)
    if se_fit:
        out["se.fit"] = cols["se.fit"]
    if interval != "none":
        q = stats.norm.ppf((1 + level) / 2)
        s = cols["se.fit"] if interval == "confidence" else np.sqrt(cols["var.pred"])
        out["lwr"], out["upr"] = cols["fit"] - q * s, cols["fit"] + q * s
    return out
