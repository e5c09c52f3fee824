"""Checks at the optimum, as lme4 makes them (lmerControl's checkConv), and restart_edge.

- singular: a variance parameter (theta with lower bound 0) below 1e-4 -> "boundary (singular)
  fit"; as in lme4 the derivative checks are then skipped.
- gradient: with g the analytic gradient of the criterion in theta and H the forward
  differences of it (:func:`gradient_hessian`; lme4 takes both from central differences of
  the criterion, deriv12, which lmmpy uses for glmer), the scaled gradient H^{-1/2} g
  (solve(chol(H), g));
  if max(min(|scaled|, |g|)) > 2e-3: "Model failed to converge with max|grad| = ...".
- Hessian: negative eigenvalues below -1e-6 -> "degenerate Hessian"; a numerically singular
  or badly conditioned one -> lme4's "nearly unidentifiable" messages.
- restart_edge: a theta left on its zero bound by the optimizer is checked by a one-sided
  difference (several step sizes); if moving off the bound lowers the criterion, the
  optimizer starts again from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LmmError
from .gradient import value_and_gradient
from .status import Check, CheckFinding

SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4) and check.conv.singular


def is_singular(theta, lower, tol: float = SINGULAR_TOL) -> bool:
    """lme4's isSingular(): a variance parameter (lower bound 0) below tol."""
    theta, lower = np.asarray(theta), np.asarray(lower)
    return bool(np.any(theta[lower == 0] < tol))


@dataclass
class LmerControl:
    """Switches and tolerances of the fit (lme4's lmerControl)."""

    check_conv: bool = True  # gradient and Hessian checks at the optimum
    grad_tol: float = 2e-3  # check.conv.grad tol
    hess_tol: float = 1e-6  # check.conv.hess tol
    singular_tol: float = SINGULAR_TOL  # check.conv.singular tol
    restart_edge: bool = True
    fallback_em: bool = True  # refit by EM when the optimizer fails
    # how the "auto" optimizer confirms an optimum on a bound: "auto", by COBYQA from the start
    # for up to COBYQA_FROM_START_MAX parameters, else by the gradient method again from the
    # optimum nudged off the bounds (and from lme4's start, if the fit began elsewhere);
    # "cobyqa" or "gradient", always that way.  (COBYQA is the
    # surer search but costs ~100 x a gradient run on a small model: refits in a bootstrap use
    # "gradient".)
    confirm_boundary: str = "auto"
    optimizer_options: dict | None = None  # passed to scipy.optimize.minimize
    # BLAS threads of the fit: None, lmmpy's rule (lmmpy.linalg.threads); k, k threads;
    # "inherit", BLAS as the process has it
    blas_threads: object = None

    @classmethod
    def coerce(cls, control) -> "LmerControl":
        if control is None:
            return cls()
        if isinstance(control, cls):
            return control
        if isinstance(control, dict):
            unknown = set(control) - set(cls.__dataclass_fields__)
            if unknown:
                raise LmmError(
                    f"unknown control setting(s): {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(cls.__dataclass_fields__)}"
                )
            return cls(**control)
        raise LmmError(f"control must be an LmerControl or a dict, not {type(control).__name__}")


def deriv12(fun, x, delta: float = 1e-4, fx: float | None = None):
    """Central finite-difference gradient and Hessian of ``fun`` at ``x`` (lme4's deriv12)."""
    x = np.asarray(x, dtype=float)
    nx = x.size
    fx = fun(x) if fx is None else fx
    g, H = np.zeros(nx), np.zeros((nx, nx))

    def at(i, di, j=None, dj=0.0):
        y = x.copy()
        y[i] += di
        if j is not None:
            y[j] += dj
        return fun(y)

    # differences across an infinite criterion give NaN, which check_convergence reports
    # ("Gradient contains NAs"): numpy's RuntimeWarnings about them would only be noise
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(nx):
            fadd, fsub = at(j, delta), at(j, -delta)
            H[j, j] = (fadd - 2 * fx + fsub) / delta**2
            g[j] = (fadd - fsub) / (2 * delta)
            for i in range(j):
                H[i, j] = H[j, i] = (
                    at(i, delta, j, delta)
                    - at(i, delta, j, -delta)
                    - at(i, -delta, j, delta)
                    + at(i, -delta, j, -delta)
                ) / (4 * delta**2)
    return g, H


def gradient_hessian(fg, x, delta: float = 1e-5):
    """The gradient at x and the Hessian by forward differences of it, for ``fg(x) ->
    (value, analytic gradient)``: n + 1 gradients where lme4's deriv12 takes 2 n^2 + 1
    criteria.  Also more accurate: the analytic gradient is exact to rounding (~1e-10
    relative), so a step of 1e-5 leaves an error of ~1e-5 relative in H, while deriv12
    divides the criterion's rounding (~1e-13 of 1e3) by its step squared, 1e-8 (and its
    central-difference gradient is off by ~delta^2 / 6 times the third derivative).  The steps
    go up, away from the zero bounds (deriv12's cross them on a nearly singular fit)."""
    x = np.asarray(x, dtype=float)

    def gradient(at):  # NaN where the criterion is not finite (the checks report NAs)
        f, g = fg(at)
        return np.array(g, dtype=float) if np.isfinite(f) else np.full(x.size, np.nan)  # a copy: fg reuses buffers

    g = gradient(x)
    H = np.zeros((x.size, x.size))
    for i in range(x.size):
        step = x.copy()
        step[i] += delta
        H[i] = (gradient(step) - g) / delta
    return g, (H + H.T) / 2


def _hessian_findings(H, tol) -> list:
    try:
        ev = np.linalg.eigvalsh(H)
    except np.linalg.LinAlgError:
        return [CheckFinding(Check.HESSIAN_PROBLEM)]
    neg = int(np.sum(ev < -tol))
    if neg:
        return [CheckFinding(Check.HESSIAN_NEGATIVE, value=neg, tol=tol)]
    try:
        np.linalg.cholesky(H)
        chol_ok = True
    except np.linalg.LinAlgError:
        chol_ok = False
    if np.any(np.abs(ev) < tol) or not chol_ok:
        return [CheckFinding(Check.HESSIAN_SINGULAR, tol=tol)]
    out = []
    if ev.max() * tol > 1:
        out.append(CheckFinding(Check.LARGE_EIGENVALUE, value=float(ev.max()), tol=tol))
    if ev.min() / ev.max() < tol:
        out.append(CheckFinding(Check.EIGENVALUE_RATIO, value=float(ev.min() / ev.max()), tol=tol))
    return out


def _hessian_messages(H, tol) -> list:
    """The Hessian check's findings as lme4 words them."""
    return [str(f) for f in _hessian_findings(H, tol)]


def check_convergence(model, theta, fmin, control: LmerControl):
    """lme4's checkConv: (findings, gradient, Hessian); derivatives skipped on singular fits."""
    theta = np.asarray(theta, dtype=float)
    if is_singular(theta, model.lower, control.singular_tol):
        return [CheckFinding(Check.BOUNDARY, tol=control.singular_tol)], None, None
    if not control.check_conv:
        return [], None, None
    g, H = gradient_hessian(value_and_gradient(model), theta)
    return derivative_findings(g, H, control), g, H


def derivative_findings(g, H, control: LmerControl) -> list:
    """lme4's checks on the gradient and Hessian at an optimum (not singular): NAs in the
    gradient, the scaled gradient solve(chol(H), g) against grad_tol, then the Hessian's."""
    if not np.all(np.isfinite(g)):
        return [CheckFinding(Check.GRADIENT_NAS)]
    msgs = []
    try:
        R = np.linalg.cholesky(H).T  # H = R'R, R upper, as R's chol()
        scaled = np.linalg.solve(R, g)
        worst = float(np.max(np.minimum(np.abs(scaled), np.abs(g))))
        if worst > control.grad_tol:
            msgs.append(CheckFinding(Check.GRADIENT_TOO_LARGE, value=worst, tol=control.grad_tol))
    except np.linalg.LinAlgError:
        msgs.append(CheckFinding(Check.SCALED_GRADIENT_UNAVAILABLE))
    return msgs + _hessian_findings(H, control.hess_tol)


# a variance parameter this close to its zero bound is on it: an optimizer's projection can
# leave 1e-18 there instead of 0 (which rounding decides), and restart_edge must see it the same
ON_BOUND = 1e-12


def restart_point(model, theta, fmin, steps=(1e-4, 1e-3, 1e-2, 1e-1)):
    """lme4's restart_edge: if leaving a zero bound lowers the criterion, where to restart.

    A variance parameter at exactly 0 is a stationary point of the criterion (which depends on
    theta^2 there), so the change from a step off the bound is of second order and a step of
    1e-4 (lme4's) can drown in rounding: several steps are tried.  Returns the best improving
    point, or None when leaving the bounds does not help."""
    theta = np.asarray(theta, dtype=float)
    best, fbest = None, fmin
    criterion = model.quick_criterion()
    for i in np.flatnonzero((model.lower == 0) & (theta <= ON_BOUND)):
        for delta in steps:
            step = theta.copy()
            step[i] = delta
            f = criterion(step)
            if f < fbest - 1e-10 * abs(fmin):
                best, fbest = step, f
    return best
