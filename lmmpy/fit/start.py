r"""Where the optimizer starts by default, from the cross-products alone.

Two starts, the better one that applies:

- the moment start (:func:`moment_start`), for a model with one random-effects term: the
  two-stage estimator of Swamy (1970).  Fit y's residual e on X (least squares, weighted) by a
  separate regression on the term's k columns within each of its l levels,
  b_j = (Z_j'WZ_j)^{-1} Z_j'We; the b_j scatter by the random effects' covariance Sigma plus
  their own sampling variance sigma^2 (Z_j'WZ_j)^{-1}, so

      s^2     = (e'We - sum_j b_j'Z_j'We) / (n - l k)      (the pooled within-level variance)
      Sigma^  = cov_j(b_j) - s^2 mean_j (Z_j'WZ_j)^{-1}
      theta   = lme4's template entries of chol(Sigma^ / s^2).

  On balanced data whose term spans the fixed effects (sleepstudy) this is the REML estimate
  itself, and the optimizer stops at its first point; elsewhere it is near the optimum
  (sleepstudy's random intercept with Days fixed: 10 evaluations instead of 21).  Where it
  does not apply -- a level with no more rows than k, or too few to separate the columns,
  Sigma^ not positive definite (a singular fit), several terms -- the rms start is used.
- the rms start (:func:`rms_start`): lme4's start, 1 on the templates' diagonals and 0 below,
  in units of each random-effects column's root mean square: 1 / rms(x_a) on the diagonal entry
  of column a.  lme4's 1 says "the random effect's SD is sigma per unit of x": for an intercept
  (rms 1) that is lme4's start; for sleepstudy's slope on Days (0-9, rms 5.3) a slope SD of
  sigma per day where the fit has 0.23 sigma.  In rms units the start is the same whatever the
  covariate's units (days or hours).

Both read only the blocks of [Z X y]'W[Z X y] (:mod:`lmmpy.fit.cross_products`): A11 holds
Z_j'WZ_j, At1_xy [X y]'WZ_1, Att [X y]'W[X y] for one term, and the diagonals give
sum_i w_i x_ia^2; so a model built from cross-products alone (a Dask fit) starts where its
pandas twin does.
"""

from __future__ import annotations

import numpy as np

from ..formula.theta_layout import tril_positions


def rms_start(model) -> np.ndarray:
    """lme4's start in units of each random-effects column's rms (module docstring)."""
    sums = [np.einsum("lkk->k", model.A11)]  # sum_i w_i x_ia^2 of the first term's columns
    tail = np.diagonal(model.Att)[: model.q_tail]
    start = 0
    for l, k in model.sizes[1:]:
        sums.append(tail[start : start + l * k].reshape(l, k).sum(axis=0))
        start += l * k
    out: list[float] = []
    for ss in sums:
        rms = np.sqrt(ss / model.n)
        scale = np.where(rms > 0, 1.0 / np.where(rms > 0, rms, 1.0), 1.0)  # a zero column keeps lme4's 1
        out.extend(scale[a] if a == b else 0.0 for a, b in tril_positions(ss.size))
    return np.array(out)


def moment_start(model) -> np.ndarray | None:
    """Swamy's two-stage estimate of theta for a one-term model (module docstring), or None
    where it does not apply."""
    if len(model.sizes) != 1:
        return None
    (l, k), p, n = model.sizes[0], model.p, model.n
    if l < 2 or n <= l * k:
        return None
    A11, Att, At1 = model.A11, model.Att, model.At1_xy  # Z_j'WZ_j; [X y]'W[X y]; [X y]'WZ_1
    with np.errstate(all="ignore"):
        try:
            beta = np.linalg.solve(Att[:p, :p], Att[:p, p]) if p else np.zeros(0)
            Zte = (At1[p] - beta @ At1[:p]).reshape(l, k)  # Z_j'We
            ete = Att[p, p] - Att[:p, p] @ beta
            np.linalg.cholesky(A11)  # every level's columns separable (raises otherwise)
            b = np.linalg.solve(A11, Zte[:, :, None])[:, :, 0]
            s2 = (ete - np.sum(b * Zte)) / (n - l * k)
            Sigma = np.atleast_2d(np.cov(b, rowvar=False)) - s2 * np.linalg.inv(A11).mean(axis=0)
            T = np.linalg.cholesky(Sigma / s2)
        except np.linalg.LinAlgError:
            return None
    theta = np.array([T[a, c] for a, c in tril_positions(k)])
    return theta if s2 > 0 and np.all(np.isfinite(theta)) else None


def optimizer_start(model) -> np.ndarray:
    """The moment start where it applies, else the rms start."""
    theta = moment_start(model)
    return rms_start(model) if theta is None else theta
