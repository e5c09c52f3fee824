"""lme4's layout of theta: the lower-triangular k x k template T of each random-effects term
(the relative covariance factor, Sigma = sigma^2 T T'), its entries stored column by column.

For k = 2 theta = (T[0,0], T[1,0], T[1,1]); a model's theta is its terms' pieces in order.
Every map between theta and the templates, or positions and names in that order, is here.
"""

from __future__ import annotations

import functools

import numpy as np


def tril_positions(k: int) -> list:
    """The (row, col) positions of a k x k lower triangle in lme4's order (column by column)."""
    return [(a, b) for b in range(k) for a in range(b, k)]


@functools.lru_cache(maxsize=64)
def _tril_order(k: int) -> tuple:
    """(rows, cols) of the k x k lower triangle in lme4's order (column-major)."""
    rows, cols = np.tril_indices(k)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


def theta_templates(theta, ks) -> list:
    """Split theta into the lower-triangular k x k templates T_i (filled column by column)."""
    out, pos = [], 0
    for k in ks:
        T = np.zeros((k, k))
        rows, cols = _tril_order(k)
        m = k * (k + 1) // 2
        T[rows, cols] = theta[pos : pos + m]
        out.append(T)
        pos += m
    return out


def theta_from_templates(templates) -> np.ndarray:
    """theta from the lower-triangular templates (column-major lower triangles): the inverse
    of :func:`theta_templates`."""
    out = []
    for T in templates:
        k = T.shape[0]
        for j in range(k):
            out.extend(T[j:, j])
    return np.array(out)
