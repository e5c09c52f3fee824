"""Variance components: each term's covariance sigma^2 T T' and lme4's VarCorr table."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_unique(names) -> list:
    """R's make.unique(): the second 'Subject' becomes 'Subject.1'."""
    seen, out = {}, []
    taken = set(names)
    for n in names:
        if n not in seen:
            seen[n] = 0
            out.append(n)
            continue
        k = seen[n]
        while True:
            k += 1
            cand = f"{n}.{k}"
            if cand not in taken:
                break
        seen[n] = k
        taken.add(cand)
        out.append(cand)
    return out


def term_covariances(templates, sigma) -> list:
    """Sigma_i = sigma^2 T_i T_i' for each term."""
    return [sigma**2 * T @ T.T for T in templates]


def sd_corr(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations sd_i = sqrt(S_ii) and correlations S_ij / (sd_i sd_j) of a covariance
    matrix; a correlation with a zero standard deviation is NaN (lme4 prints it blank)."""
    sd = np.sqrt(np.diag(S))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = S / np.outer(sd, sd)
    corr[(sd[:, None] == 0) | (sd[None, :] == 0)] = np.nan
    return sd, corr


def varcorr_frame(groups, cnames, covs, sigma) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(fit))``: per term the variances, then the covariances
    (sdcor holding standard deviations and correlations), then the residual (none when
    ``sigma`` is None: a family with a fixed dispersion, as lme4 leaves it out for glmer)."""
    rows = []
    for g, names, S in zip(make_unique(groups), cnames, covs):
        sd, corr = sd_corr(S)
        for i, nm in enumerate(names):
            rows.append((g, nm, None, S[i, i], sd[i]))
        for j in range(len(names)):
            for i in range(j + 1, len(names)):
                rows.append((g, names[j], names[i], S[i, j], corr[i, j]))
    if sigma is not None:
        rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])
