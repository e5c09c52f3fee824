r"""P values of a family of contrasts adjusted for multiplicity, as emmeans adjusts them.

For m contrasts with t ratios t_i, df nu_i and unadjusted two-sided p_i:

- ``"tukey"`` (pairwise comparisons of k means): p_i = P(Q_{k, nu_i} > sqrt(2) |t_i|), Q the
  studentized range (``scipy.stats.studentized_range``; nu = inf for z ratios);
- ``"bonferroni"``: min(1, m p_i);
- ``"sidak"``: 1 - (1 - p_i)^m;
- ``"holm"``: step-down, p_(j) = max_{l <= j} min(1, (m - l + 1) p_(l)) over the sorted p;
- ``"fdr"`` (Benjamini-Hochberg): p_(j) = min_{l >= j} min(1, m p_(l) / l);
- ``"none"``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import LmmError

ADJUSTMENTS = ("tukey", "bonferroni", "sidak", "holm", "fdr", "none")


def adjust_method(adjust: str) -> str:
    key = str(adjust).lower()
    key = {"bh": "fdr", "bonf": "bonferroni"}.get(key, key)
    if key not in ADJUSTMENTS:
        raise LmmError(f"adjust={adjust!r}: use one of {', '.join(map(repr, ADJUSTMENTS))}")
    return key


def unadjusted_p(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p values of t ratios (normal ones where df = inf)."""
    t, df = np.abs(np.asarray(t, float)), np.asarray(df, float)
    return np.where(np.isinf(df), 2 * stats.norm.sf(t), 2 * stats.t.sf(t, np.where(np.isinf(df), 1.0, df)))


def adjust_p(t: np.ndarray, df: np.ndarray, adjust: str, n_means: int) -> np.ndarray:
    """The adjusted p values of one family (one by-group) of contrasts."""
    t, df = np.asarray(t, float), np.asarray(df, float)
    p = unadjusted_p(t, df)
    m = len(p)
    ok = np.isfinite(p)
    if adjust == "none" or m == 0:
        return p
    if adjust == "tukey":
        out = np.full(m, np.nan)
        for i in np.flatnonzero(ok):
            out[i] = stats.studentized_range.sf(np.sqrt(2) * abs(t[i]), n_means, df[i])
        return np.minimum(out, 1.0)
    m_ok = int(ok.sum())
    if adjust == "bonferroni":
        return np.minimum(1.0, m_ok * p)
    if adjust == "sidak":
        return 1 - (1 - p) ** m_ok
    out = np.full(m, np.nan)
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(p[idx], kind="stable")]
    ps = p[order]
    if adjust == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m_ok - np.arange(m_ok)) * ps))
    else:  # fdr
        adj = np.minimum.accumulate((np.minimum(1.0, m_ok * ps / np.arange(1, m_ok + 1)))[::-1])[::-1]
    out[order] = adj
    return out
