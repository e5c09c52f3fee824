r"""Projected BFGS for a smooth function on a box x >= lower, gradients only where needed.

For large models the analytic gradient costs about two criterion evaluations (a dense inverse
beside the dense Cholesky), and L-BFGS-B asks for it at every trial point of its line search.
Here the line search backtracks on criterion values alone (Armijo's condition along the
projected path) and the gradient is taken once per accepted point.

Each iteration: variables on their bound with the gradient pushing outward are held; the
others move along d = -H g, H the BFGS inverse-Hessian approximation, projected onto the box.
H starts diagonal, from the caller's scale ``h0`` (for lme4's theta, 1 / (4 l) for a term with
l levels: the curvature the EM algorithm implies at theta = 1), and is updated with each
accepted step (s, y) where s'y > 0.  The run stops when the criterion changes by at most ftol
relative, or the projected gradient is below gtol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARMIJO = 1e-4


@dataclass
class PbfgsResult:
    x: np.ndarray
    fun: float
    nit: int
    message: str
    success: bool


def minimize_pbfgs(
    fun, fun_grad, x0, lower, h0, max_iter: int = 1000, ftol: float = 1e-12, gtol: float = 1e-7
) -> PbfgsResult:
    """Minimise ``fun`` (value only) with ``fun_grad`` (value and gradient) over x >= lower."""
    lower = np.asarray(lower, dtype=float)
    x = np.maximum(np.asarray(x0, dtype=float), lower)
    fx, g = fun_grad(x)
    if not np.isfinite(fx):
        return PbfgsResult(x, fx, 0, "the criterion is not finite at the start", False)
    H0 = np.diag(np.asarray(h0, dtype=float))
    H = H0.copy()
    for it in range(1, max_iter + 1):
        held = (x <= lower) & (g > 0)
        if np.max(np.abs(np.where(held, 0.0, g)), initial=0.0) < gtol:
            return PbfgsResult(x, fx, it - 1, "projected gradient below gtol", True)
        free = ~held
        d = np.zeros_like(x)
        d[free] = -H[np.ix_(free, free)] @ g[free]
        if g @ d >= 0:  # H lost positive definiteness on the free set: start it again
            H = H0.copy()
            d = np.where(free, -np.diag(H) * g, 0.0)
        t = 1.0
        while True:  # backtracking on values along the projected path
            x_new = np.maximum(x + t * d, lower)
            f_new = fun(x_new)
            if np.isfinite(f_new) and f_new <= fx + ARMIJO * (g @ (x_new - x)):
                break
            t *= 0.5 if t > 0.1 else 0.1
            if t < 1e-12:
                return PbfgsResult(x, fx, it, "the line search found no decrease", True)
        f_new, g_new = fun_grad(x_new)
        s, y = x_new - x, g_new - g
        sy = s @ y
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
            rho = 1.0 / sy
            V = np.eye(x.size) - rho * np.outer(s, y)
            H = V @ H @ V.T + rho * np.outer(s, s)
        converged = abs(fx - f_new) <= ftol * max(abs(fx), abs(f_new), 1.0)
        x, fx, g = x_new, f_new, g_new
        if converged:
            return PbfgsResult(x, fx, it, "relative reduction of the criterion below ftol", True)
    return PbfgsResult(x, fx, max_iter, "the iteration limit was reached", False)
