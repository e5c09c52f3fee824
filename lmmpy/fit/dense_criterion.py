r"""The profiled criterion and its gradient for a small model through one dense Cholesky factor.

For a model whose random effects, fixed effects and response together are few
(N = q + p + 1 <= DENSE_MAX_ORDER), the blocked factor's bookkeeping (per-level batches, sparse
products, the Schur complement's pattern) costs far more than its arithmetic: sleepstudy's
N is 39.  Here the same matrix is factored whole.  With A = [Z X y]'W[Z X y] (dense, N x N,
from the cross-products) and D = diag(Lambda, I_{p+1}),

    M = D' A D + diag(I_q, 0, 0) = U'U     (U upper triangular: one LAPACK dpotrf)

is Omega of :mod:`lmmpy.linalg.blocked` (with y's residual on X in place of y, which changes
none of the criterion's terms and less of its rounding: :func:`residual_response_products`),
so U' is its L: log|L_theta|^2 = 2 sum_{i<q} log U_ii,
log|R_X|^2 = 2 sum_{q<=i<q+p} log U_ii and pwrss = U_NN^2, and the criteria are those of
:mod:`lmmpy.fit.deviance` (``ml_deviance``, ``reml_criterion``: the same formulas, written
there once; here they are read off U).

The gradient.  Let D_k = dLambda / dtheta_k (ones at the pattern P_k of template entry (a, b):
rows s + j k + a, columns s + j k + b over the term's levels j) and m the lead (q + p for REML,
q for ML), M_m, A_m, D_m the leading m x m blocks.  Then d log|M_m| = tr(M_m^{-1} dM_m) and
dM_m = D_k' A_m D_m + D_m' A_m D_k give

    d log|M_m| / dtheta_k = 2 sum_{(r, c) in P_k} (A_m D_m M_m^{-1})_{rc}         (one dpotrs)

and, with [u; beta] from U_lead [u; beta] = U[:q+p, N] and r the weighted residual,

    d pwrss / dtheta_k = -2 sum_{(r, c) in P_k} (Z'W r)_r u_c,
    Z'W r = A[:q] [-Lambda u; -beta; 1]                                          (envelope theorem)

as in :mod:`lmmpy.fit.gradient`; the criterion's gradient is d log|M_m| + (n - p or n) / pwrss
d pwrss.  The optimizer and the convergence checks evaluate small models here; the fit's
results are read off the blocked factor at the optimum, as for every model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg import lapack

from ..formula.theta_layout import tril_positions
from .cross_products import CrossProducts

LOG2PI = math.log(2.0 * math.pi)
# A dense factor of this order costs less than the blocked route's overhead (bench/README.md)
DENSE_MAX_ORDER = 64
# the smallest pivot of [X y] in M's factor relative to its diagonal entry for which the dense
# route is used: below it (X nearly collinear, as seconds since 1970 beside an intercept, or a
# response fitted almost exactly) ~ -log10(ratio) digits cancel, the two routes' roundings
# differ beyond the optimizer's tolerances, and the blocked factor, which the fit reports, is used
MIN_PIVOT_RATIO = 1e-8


def dense_order(sizes: Any, p: int) -> int:
    """N = q + p + 1, the order of the dense matrix M."""
    return sum(l * k for l, k in sizes) + p + 1


def dense_cross_products(cp: CrossProducts, sizes: Any, p: int) -> np.ndarray:
    """A = [Z X y]'W[Z X y] as one dense N x N array, from the blocks of ``cp``."""
    l1, k1 = sizes[0]
    q1 = l1 * k1
    N = dense_order(sizes, p)
    A = np.zeros((N, N))
    idx = np.arange(q1).reshape(l1, k1)
    A[idx[:, :, None], idx[:, None, :]] = cp.A11
    A[q1:, q1:] = cp.Att
    zt1 = cp.At1_z.toarray()
    q = N - p - 1
    A[q1:q, :q1] = zt1
    A[:q1, q1:q] = zt1.T
    A[q:, :q1] = cp.At1_xy
    A[:q1, q:] = cp.At1_xy.T
    return A


def residual_response_products(cp: CrossProducts, sizes: Any, p: int) -> np.ndarray:
    """The last column of A for y replaced by r = y - X g, g its least-squares coefficients on X
    (weighted): the criterion is the same (beta absorbs any X g: pwrss, |R_X| and u do not
    change), but r'r is far smaller than y'y (a mean of 25 with a spread of 2 makes y'y 150
    times r'r) and so is the cancellation in pwrss = r'r - ..., the rounding noise of the
    criterion with it.  Needs the rows (``cp.rows``); a sum of partitions keeps its own column."""
    rows = cp.rows
    if rows is None or rows.yw is None or p == 0:
        return np.concatenate([cp.At1_xy[-1], cp.Att[:, -1]])
    solver = rows.__dict__.get("_x_pinv")  # X's pseudo-inverse, once for every response
    if solver is None:
        solver = rows.__dict__["_x_pinv"] = np.linalg.pinv(rows.Xw)
    return rows.products_with(rows.yw - rows.Xw @ (solver @ rows.yw))


class DenseCriterion:
    """theta -> the model's criterion (and its gradient) through one dense Cholesky of M."""

    def __init__(
        self, cp: CrossProducts, sizes: Any, p: int, n: int, log_w_sum: float, REML: bool, counter: Any = None
    ) -> None:
        self.cp, self.sizes, self.p, self.n = cp, [tuple(s) for s in sizes], p, n
        self.log_w_sum, self.REML = log_w_sum, bool(REML)
        self.counter = counter  # an object whose n_evals counts the evaluations (the model)
        N = self.N = dense_order(self.sizes, p)
        q = self.q = N - p - 1
        self.m = q + p if self.REML else q
        self.A = dense_cross_products(cp, self.sizes, p)
        self.refresh_response()
        # Lambda's pattern in D: theta's entry src[i] goes to (rows[i], cols[i])
        rows, cols, src = [], [], []
        start, base = 0, 0
        for l, k in self.sizes:
            for t, (a, b) in enumerate(tril_positions(k)):
                rows.append(start + np.arange(l) * k + a)
                cols.append(start + np.arange(l) * k + b)
                src.append(np.full(l, base + t))
            start += l * k
            base += k * (k + 1) // 2
        self.rows, self.cols = np.concatenate(rows), np.concatenate(cols)
        self.src = np.concatenate(src)
        self.ntheta = base
        self.flat = self.rows * N + self.cols
        self.D = np.eye(N)
        self.diag_q = np.arange(q) * (N + 1)
        self.B = np.empty((N, N))
        self.M = np.empty((N, N))
        self._xf = np.empty(q + p + 1)
        self._xf[-1] = -1.0
        self.scale_n = (n - p) if self.REML else n
        self._last: tuple | None = None  # (theta, criterion, gradient) of the last evaluation

    def refresh_response(self) -> None:
        """Re-read the products with y (after :meth:`CrossProducts.set_response`): those of y's
        residual from its least-squares fit on X where the rows are at hand (see
        :func:`residual_response_products`), else the cross-products' own."""
        col = residual_response_products(self.cp, self.sizes, self.p)
        self.A[:, -1] = col
        self.A[-1, :] = col
        self._last = None

    def _factor(self, theta: np.ndarray) -> Any:
        """U (Fortran order, upper: U'U = M) at theta, or None where M is not positive definite."""
        D = self.D
        D.flat[self.flat] = theta[self.src]
        np.matmul(self.A, D, out=self.B)
        M = np.matmul(D.T, self.B, out=self.M)
        M.flat[self.diag_q] += 1.0
        # M's C-ordered lower triangle is the upper one of its Fortran-ordered transpose
        U, info = lapack.dpotrf(M.T, lower=0, clean=0, overwrite_a=1)
        if self.counter is not None:
            self.counter.n_evals += 1
        return U if info == 0 else None

    def well_conditioned(self, theta: Any) -> bool:
        """Whether every pivot of [X y] in M's factor at theta is at least MIN_PIVOT_RATIO of
        its diagonal entry of M (few digits cancel)."""
        theta = np.asarray(theta, dtype=float)
        U = self._factor(theta)
        if U is None:
            return False
        M = self.D.T @ self.A @ self.D  # _factor overwrote its M with U
        q = self.q
        return bool(np.all(np.diagonal(U)[q:] ** 2 >= MIN_PIVOT_RATIO * np.diagonal(M)[q:]))

    def _value(self, U: np.ndarray) -> float:
        d = np.diagonal(U)
        pwrss = float(d[-1]) ** 2
        logdets = 2.0 * float(np.log(d[: self.m]).sum())
        nn = self.scale_n
        if not (pwrss > 0.0 and math.isfinite(pwrss) and math.isfinite(logdets)):
            return math.inf
        return logdets + nn * (1.0 + LOG2PI + math.log(pwrss / nn)) - self.log_w_sum

    def __call__(self, theta: Any) -> float:
        """The criterion at theta (inf where M is not positive definite)."""
        theta = np.asarray(theta, dtype=float)
        if not math.isfinite(theta.sum()):  # a NaN or infinite entry
            return math.inf
        U = self._factor(theta)
        return math.inf if U is None else self._value(U)

    def value_and_gradient(self, theta: Any) -> tuple[float, np.ndarray]:
        """(criterion, gradient) at theta; (inf, zeros) where M is not positive definite.  The
        last point's are kept: the checks ask again at the optimizer's last point."""
        theta = np.asarray(theta, dtype=float)
        last = self._last
        if last is not None and np.array_equal(last[0], theta):
            return last[1], last[2].copy()
        f, g = self._value_and_gradient(theta)
        self._last = (theta.copy(), f, g.copy())
        return f, g

    def _value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        U = self._factor(theta) if math.isfinite(theta.sum()) else None
        f = math.inf if U is None else self._value(U)
        if U is None or not math.isfinite(f):
            return math.inf, np.zeros(self.ntheta)
        q, p, m, N = self.q, self.p, self.m, self.N
        qp = q + p
        pwrss = float(U[-1, -1]) ** 2
        x, info = lapack.dtrtrs(U[:qp, :qp], U[:qp, N - 1], lower=0)
        xf = self._xf
        xf[:qp] = x
        zr = self.A[:q] @ (self.D @ xf)  # Z'W r, with the sign of -(Lambda u; beta; -1)
        g_pwrss = np.bincount(self.src, weights=zr[self.rows] * x[self.cols], minlength=self.ntheta)
        G, info = lapack.dpotrs(U[:m, :m], self.B[:m, :m].T, lower=0)  # M_m^{-1} (A_m D_m)'
        g_logdet = np.bincount(self.src, weights=G[self.cols, self.rows], minlength=self.ntheta)
        return f, 2.0 * (g_logdet + (self.scale_n / pwrss) * g_pwrss)
