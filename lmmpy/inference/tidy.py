"""broom.mixed's tidy() tables of a fit: fixed effects, variance parameters, conditional modes."""

from __future__ import annotations


import pandas as pd

from ..errors import LmmError
from ..formula.theta_layout import tril_positions
from ..results.varcorr import sd_corr


def tidy(fit, effects: str = "fixed") -> pd.DataFrame:
    """broom.mixed's tidy(): effects "fixed" (estimate, std.error, statistic), "ran_pars"
    (standard deviations and correlations) or "ran_vals" (conditional modes and their SDs)."""
    generalized = hasattr(fit, "zvalues")  # a glmer fit: z statistics and their p values
    if effects == "fixed":
        out = pd.DataFrame(
            {
                "effect": "fixed",
                "term": fit.fixef.index,
                "estimate": fit.fixef.to_numpy(),
                "std.error": fit.se.to_numpy(),
                "statistic": (fit.zvalues if generalized else fit.tvalues).to_numpy(),
            }
        )
        if generalized:
            out["p.value"] = fit.pvalues.to_numpy()
        return out
    if effects == "ran_pars":
        rows = []
        for t, S in zip(fit.design.reterms, fit.covariances):
            sd, corr = sd_corr(S)
            for i, j in tril_positions(t.k):
                if i == j:
                    rows.append((t.group, f"sd__{t.cnames[i]}", sd[i]))
                else:
                    rows.append((t.group, f"cor__{t.cnames[j]}.{t.cnames[i]}", corr[i, j]))
        if not generalized or fit._residual_sd is not None:  # no residual sd without a dispersion
            rows.append(("Residual", "sd__Observation", fit.sigma))
        return pd.DataFrame(rows, columns=["group", "term", "estimate"]).assign(effect="ran_pars")[
            ["effect", "group", "term", "estimate"]
        ]
    if effects == "ran_vals":
        frames = []
        for g, df in fit.ranef.items():
            sd = fit.ranef_sd[g]
            long = df.stack().rename("estimate").reset_index()
            long.columns = ["level", "term", "estimate"]
            long["std.error"] = sd.stack().to_numpy()
            long.insert(0, "group", g)
            frames.append(long)
        return pd.concat(frames, ignore_index=True).assign(effect="ran_vals")[
            ["effect", "group", "level", "term", "estimate", "std.error"]
        ]
    raise LmmError(f"effects must be 'fixed', 'ran_pars' or 'ran_vals', not {effects!r}")
