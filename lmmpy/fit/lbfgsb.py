"""L-BFGS-B with bounds below, driven directly: scipy's own L-BFGS-B routine (``setulb``, the
reverse-communication form of Byrd, Lu, Nocedal and Zhu's algorithm) called in the loop that
``scipy.optimize.minimize(method="L-BFGS-B")`` runs, without the wrappers around it.

Why: for a small model one criterion-and-gradient evaluation costs ~30 microseconds, and
minimize's per-iteration wrapping (a ScalarFunction with its copies, memoization and counters,
an OptimizeResult per iteration for the callback) costs more than that.  The iterates are those
of minimize: the same routine, the same start (clipped to the bounds), the same tolerances
(factr = ftol / eps, pgtol = gtol), the same stopping rules (maxiter, maxfun).

``setulb`` is scipy's private interface; its calling convention is that of scipy >= 1.15 (the C
translation).  Where it differs (an older scipy), :func:`minimize_lbfgsb` uses
``scipy.optimize.minimize`` itself: the same result, slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.optimize import Bounds, minimize

try:  # scipy's private L-BFGS-B routine and its messages
    from scipy.optimize import _lbfgsb
    from scipy.optimize._lbfgsb_py import status_messages, task_messages
except ImportError:  # pragma: no cover - a scipy without them: minimize is used
    _lbfgsb = None

MAXCOR = 10  # minimize's defaults
MAXLS = 20
MAXFUN = 15000
TASK_FG, TASK_NEW_X, TASK_CONVERGENCE, TASK_STOP = 3, 1, 4, 5

_direct_works = _lbfgsb is not None  # set to False once setulb refuses the call


@dataclass
class LbfgsbResult:
    """What the optimizer reports: the point, whether it converged and why it stopped."""

    x: np.ndarray
    fun: float
    success: bool
    message: str
    nfev: int
    nit: int


def minimize_lbfgsb(
    fg: Callable, x0: Any, lower: Any, ftol: float = 2.2e-9, gtol: float = 1e-5, maxiter: int = 15000, **other: Any
) -> LbfgsbResult:
    """Minimise ``fg(x) -> (f, gradient)`` from x0 subject to x >= lower (entries -inf for
    none); ``other`` options go to scipy's minimize, which is then used."""
    global _direct_works
    lower = np.asarray(lower, dtype=float)
    if other or not _direct_works:
        return _with_minimize(fg, x0, lower, ftol, gtol, maxiter, other)
    n = lower.size
    x = np.array(np.maximum(np.asarray(x0, dtype=float).ravel(), lower), dtype=np.float64)
    nbd = np.where(np.isinf(lower), 0, 1).astype(np.int32)
    low = np.where(np.isinf(lower), 0.0, lower)
    upp = np.zeros(n)
    f: Any = np.array(0.0)  # setulb takes the 0-d array first, then the criterion's float
    g = np.zeros(n)
    wa = np.zeros(2 * MAXCOR * n + 5 * n + 11 * MAXCOR * MAXCOR + 8 * MAXCOR)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29)
    factr = ftol / np.finfo(float).eps
    nfev = nit = 0
    last_x = None
    while True:
        try:
            _lbfgsb.setulb(
                MAXCOR, x, low, upp, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, MAXLS, ln_task
            )
        except TypeError:  # another scipy's calling convention: before any evaluation
            if nfev:
                raise
            _direct_works = False
            return _with_minimize(fg, x0, lower, ftol, gtol, maxiter, other)
        if task[0] == TASK_FG:
            if last_x is None or not np.array_equal(x, last_x):  # minimize's memoization
                last_x = x.copy()
                fx, gx = fg(last_x)
                nfev += 1
                f, g = float(fx), np.array(gx, dtype=np.float64)
        elif task[0] == TASK_NEW_X:
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = TASK_STOP, 504
            elif nfev > MAXFUN:
                task[0], task[1] = TASK_STOP, 502
        else:
            break
    message = status_messages[int(task[0])] + ": " + task_messages[int(task[1])]
    return LbfgsbResult(x, float(f), bool(task[0] == TASK_CONVERGENCE), message, nfev, nit)


def _with_minimize(fg, x0, lower, ftol, gtol, maxiter, other):
    opts = {"ftol": ftol, "gtol": gtol, "maxiter": maxiter, **other}
    bounds = Bounds(lower, np.full_like(lower, np.inf))
    res = minimize(fg, x0, method="L-BFGS-B", jac=True, bounds=bounds, options=opts)
    return LbfgsbResult(res.x, float(res.fun), bool(res.success), str(res.message), int(res.nfev), int(res.nit))
