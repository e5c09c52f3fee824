r"""Profile-likelihood confidence intervals and profiles, as lme4's ``confint(method = "profile")``
and ``profile()``.

As in lme4, profiles use the ML deviance: a REML fit is refitted by ML first (lme4's devfun2
calls refitML), so a REML fit's profile intervals are those of its ML refit.  With base the ML
deviance at the optimum, each parameter's signed root

    zeta(v) = sign(v - v_hat) sqrt(d(v) - base)

takes d(v), the deviance minimised over all the other parameters with this one held at v.  In
the relative covariance factor theta and sigma, beta profiled out, the deviance is

    D(theta, sigma) = log|L_theta|^2 + pwrss(theta) / sigma^2 + n log(2 pi sigma^2) - sum(log w)

(lme4's devfun2); at sigma^2 = pwrss / n it is the profiled ML deviance d(theta).  The other
parameters are minimised over by L-BFGS-B with the analytic gradient (:mod:`lmmpy.fit.gradient`),
in coordinates where holding the parameter at v is a bound, or no constraint at all:

- sigma = v: D(theta, v) over theta, dD/dtheta = d log|L|^2 + d pwrss / v^2;
- sd_a = v, the standard deviation of row a of a term's template T (sd_a = sigma |T_a|): theta
  free and sigma = v / |T_a|, so with s = |T_a|^2

      D = log|L|^2 + pwrss s / v^2 + n log(2 pi v^2 / s),
      dD/dtheta = d log|L|^2 + (s / v^2) d pwrss + (pwrss / v^2 - n / s) ds/dtheta;

  at v = 0 the row T_a is held at 0 and sigma profiled out (d over the rest of theta);
- cor_ab = v: a correlation does not involve sigma, so d(theta), with row a of the term's
  template written so that its correlation with row b is v whatever the rest (see
  :func:`_cor_slice`);
- a fixed effect beta_j = v: x_j v moves into the offset of the model without column j, and d is
  minimised over theta (one reduced model per coefficient, its response replaced at each step).

Each profile is traced as lme4 traces it: from the estimate and a point 1% away from it (for a
fixed effect, delta standard errors), steps of delta = cutoff / 8 on the zeta scale (cutoff =
sqrt(qchisq(0.99, number of parameters))), the next value from the last two points' slope, a
step at most 10 times the last; every inner minimisation starts from the previous optimum,
extrapolated linearly from the last two.  A side stops when zeta passes the quantile of the
level or the parameter reaches its bound (0 for a standard deviation, -/+1 for a correlation).
The ends are where a natural cubic spline through the points (lme4 inverts an interpolation
spline) crosses -/+ the quantile, each checked by one more evaluation there and the spline
refitted until zeta there is within ROOT_TOL of the quantile.  A profile that stays inside the
quantile up to a bound ends at the bound, as in lme4.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import interpolate, optimize, stats

from ..fit.deviance import LmmModel, ml_deviance_at
from ..fit.gradient import profiled_gradient
from ..linalg.threads import with_fit_blas_threads
from .parameters import parameter_vector, ran_par_names
from .progress import Progress
from ..results.model import ConvergenceWarning

ALPHA_MAX = 0.01  # lme4's alphamax: the profiles' cutoff is sqrt(qchisq(1 - alphamax, #parameters))
DELTA_CUTOFF = 1 / 8  # lme4's delta.cutoff: the zeta step is cutoff / 8
MAX_MULT = 10  # lme4's maxmult: a step is at most 10 times the previous one
MAX_STEPS = 50  # per side of a profile (lme4: maxpts = 100 for both)
ROOT_TOL = 1e-6  # |zeta(end) -/+ z| accepted at an interval's end
DEV_TOL = 1e-6  # a deviance this far below the fit's means the fit is not at its optimum
INNER_OPTIONS = {"ftol": 1e-12, "gtol": 1e-7, "maxiter": 500}  # deviance to ~1e-9: ends to ~1e-7
CORR_STEP = 1e-6  # the relative difference step for the derivatives of a correlation's map
EXPECTED_STEPS = 14  # zeta evaluations per parameter, for the progress estimate


def ml_fit(fit):
    """The fit itself if it is ML, otherwise its ML refit (as lme4's devfun2)."""
    if not fit.REML:
        return fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the REML fit's own checks were reported when it was made
        return fit.refit(fit.design.y, REML=False)


def _term_slots(model):
    """Per random-effects term, {(row, column) of its template: position in theta}, lme4's
    column-major order of the lower triangle."""
    out, pos = [], 0
    for _, k in model.sizes:
        slots = {}
        for c in range(k):
            for a in range(c, k):
                slots[(a, c)] = pos
                pos += 1
        out.append(slots)
    return out


def _update(model, theta) -> bool:
    """The model's factor at theta, through its criterion (what every evaluation goes through,
    and what hooks on evaluations see); False where it cannot be factored."""
    return bool(np.isfinite(model(theta)))


def _rotation(r, e):
    """The rotation of R^m taking the unit vector r to the unit vector e in their plane (the
    identity on its complement): I + K + K^2 / (1 + r'e), K = e r' - r e'; smooth in e except
    at e = -r."""
    K = np.outer(e, r) - np.outer(r, e)
    return np.eye(r.size) + K + K @ K / (1.0 + r @ e)


@dataclasses.dataclass
class _Slice:
    """The inner problem of one parameter's profile: for a value v, minimise ``fg(x, v)``
    (deviance and gradient) over x within ``bounds(v)``; ``x_hat`` is the optimum's x."""

    name: str
    hat: float
    lower: float  # the parameter's own range
    upper: float
    first_step: float  # from the estimate to the second point
    x_hat: np.ndarray
    fg: Callable[..., Any]
    bounds: Callable[..., Any]
    start: Callable[..., Any] | None = None  # (x0, v) -> a start the inner problem at v can be evaluated at
    x_scale: np.ndarray | None = None  # the size of each x at the optimum, for difference steps
    inner_options: dict | None = None  # L-BFGS-B's options for the inner problem (default INNER_OPTIONS)


def _sigma_slice(model, theta_hat, sigma_hat):
    n, lw = model.n, model.log_w_sum
    lower = [(lo, None) for lo in model.lower]

    def fg(x, v):
        if not _update(model, x):
            return np.inf, np.zeros_like(x)
        L = model.L
        g_logdet, g_pwrss = profiled_gradient(model, parts=True)
        f = ml_deviance_at(L, n, v**2, lw)
        return f, g_logdet + g_pwrss / v**2

    return _Slice("sigma", sigma_hat, 0.0, np.inf, 0.01 * sigma_hat, theta_hat.copy(), fg, lambda v: lower)


def _sd_slice(model, theta_hat, sd_hat, sigma_hat, row_slots, unit):
    n, lw = model.n, model.log_w_sum
    rows = np.array(row_slots)
    # the row's sign is free for v > 0 (only T T' matters): no bound for a step to land on, where
    # s = 0 and D is infinite
    free = [(None, None) if i in row_slots else (lo, None) for i, lo in enumerate(model.lower)]
    at_zero = [(0.0, 0.0) if i in row_slots else (lo, None) for i, lo in enumerate(model.lower)]

    def fg(x, v):
        if v == 0:  # the row is 0 and sigma free: the profiled ML deviance over the rest of theta
            x = x.copy()
            x[rows] = 0.0
            if not _update(model, x):
                return np.inf, np.zeros_like(x)
            g = profiled_gradient(model)
            g[rows] = 0.0
            return model.deviance_ml(), g
        s = float(x[rows] @ x[rows])
        if s <= 0 or not _update(model, x):
            return np.inf, np.zeros_like(x)
        L = model.L
        g_logdet, g_pwrss = profiled_gradient(model, parts=True)
        f = ml_deviance_at(L, n, v**2 / s, lw)  # sigma^2 = v^2 / s
        g = g_logdet + (s / v**2) * g_pwrss
        g[rows] += (L.pwrss / v**2 - n / s) * 2.0 * x[rows]
        return f, g

    def start(x0, v):  # a zero row (the estimate on its bound) has no sigma: give it sigma_hat's
        if v > 0 and not np.any(x0[rows]):
            x0 = x0.copy()
            x0[rows[-1]] = v / sigma_hat  # the row's last slot is its diagonal
        return x0

    # from an estimate on the bound, lme4's 1e-3 in units where the column and sigma are 1
    step = 0.01 * sd_hat if sd_hat > 0 else 1e-3 * sigma_hat * unit
    return _Slice("sd", sd_hat, 0.0, np.inf, step, theta_hat.copy(), fg, lambda v: at_zero if v == 0 else free, start)


def _cor_slice(model, theta_hat, cor_hat, slots, a, b, magnitudes):
    """cor_ab (a > b) of the term whose template positions are ``slots``.  Row a of the template
    is written

        T_a = sqrt(1 - v^2) B(e) z + v |z| e,   e = T_b / |T_b|,

    z in R^a free and B(e) an orthonormal basis of e's complement in R^(a+1) (a fixed basis
    rotated with e): then cor(T_a, T_b) = v and |T_a| = |z|, every row with that correlation is
    one of these, and no constraint is left (any T gives a covariance T T').  z takes row a's
    positions in x but (a, b)'s, which holds v; derivatives through the map x -> theta (a k x k
    computation) by central differences."""
    m = a + 1
    row_a = [slots[(a, c)] for c in range(m)]
    row_b = [slots[(b, c)] for c in range(b + 1)]
    fixed = slots[(a, b)]
    z_slots = [slots[(a, c)] for c in range(m) if c != b]
    mapped = sorted(set(z_slots) | set(row_b))  # the positions the map's derivatives are needed for

    def direction(x):
        e = np.zeros(m)
        e[: b + 1] = x[row_b]
        norm = np.linalg.norm(e)
        return e / norm if norm > 0 else np.eye(m)[b]

    e_ref = direction(theta_hat)
    basis_ref = np.linalg.qr(np.column_stack([e_ref, np.eye(m)]))[0][:, 1:m]  # e_ref's complement

    def theta_of(x, v):
        e = direction(x)
        z = x[z_slots]
        theta = x.copy()
        B = _rotation(e_ref, e) @ basis_ref
        theta[row_a] = np.sqrt(max(0.0, 1.0 - v * v)) * (B @ z) + v * np.linalg.norm(z) * e
        return theta

    x_hat = theta_hat.copy()
    T_a = theta_hat[row_a]
    c = np.sqrt(max(0.0, 1.0 - cor_hat**2))
    x_hat[z_slots] = basis_ref.T @ T_a / c if c > 0 else np.linalg.norm(T_a) * np.eye(a)[0]
    x_hat[fixed] = cor_hat
    free_bounds = [(lo, None) for lo in model.lower]
    for p in z_slots:
        free_bounds[p] = (None, None)

    def fg(x, v):
        theta = theta_of(x, v)
        if not _update(model, theta):
            return np.inf, np.zeros_like(x)
        g_theta = profiled_gradient(model)
        g = g_theta.copy()
        for p in mapped:
            h = CORR_STEP * max(abs(x[p]), magnitudes[p])
            up, down = x.copy(), x.copy()
            up[p] += h
            down[p] -= h
            g[p] = (theta_of(up, v) - theta_of(down, v)) @ g_theta / (2 * h)
        g[fixed] = 0.0
        return model.deviance_ml(), g

    def bounds(v):
        out = list(free_bounds)
        out[fixed] = (v, v)
        return out

    step = 0.01 * cor_hat if cor_hat != 0 else 1e-3
    if abs(cor_hat + step) > 1:  # the estimate at (or next to) -/+1: step inwards
        step = -np.sign(cor_hat) * 0.01
    return _Slice("cor", cor_hat, -1.0, 1.0, step, x_hat, fg, bounds)


def _fixed_slice(fit_ml, j, delta):
    d = fit_ml.design
    keep = [c for c in range(d.p) if c != j]
    design = dataclasses.replace(d, X=d.X[:, keep], xnames=[d.xnames[c] for c in keep])
    model = LmmModel(design, REML=False)
    xj = d.X[:, j]
    lower = [(lo, None) for lo in model.lower]
    current = {"v": None}

    def fg(x, v):
        if current["v"] != v:  # the response with x_j v moved into the offset
            model.set_response(d.y - xj * v)
            current["v"] = v
        if not _update(model, x):
            return np.inf, np.zeros_like(x)
        return model.deviance_ml(), profiled_gradient(model)

    se = float(fit_ml.se.iloc[j])
    return _Slice(
        "fixed", float(fit_ml._beta[j]), -np.inf, np.inf, delta * se, fit_ml.theta.copy(), fg, lambda v: lower
    )


def _slices(fit_ml, delta):
    """One inner problem per parameter, in lme4's order (variance parameters, then beta)."""
    model = fit_ml.model
    theta_hat = fit_ml.theta.copy()
    psi = parameter_vector(fit_ml).to_numpy()
    magnitudes = _theta_magnitudes(model, theta_hat)
    out = []
    for slots in _term_slots(model):
        for (a, c), p in slots.items():
            if a == c:
                row = [q for (i, _), q in slots.items() if i == a]
                out.append(_sd_slice(model, theta_hat, psi[p], fit_ml.sigma, row, magnitudes[p]))
            else:
                out.append(_cor_slice(model, theta_hat, psi[p], slots, a, c, magnitudes))
    out.append(_sigma_slice(model, theta_hat, fit_ml.sigma))
    for j in range(fit_ml.design.p):
        out.append(_fixed_slice(fit_ml, j, delta))
    for slc in out:  # every x has theta's layout
        slc.x_scale = magnitudes
    return out


def _theta_magnitudes(model, theta):
    """The size of each theta entry, for steps that do not depend on the columns' units: row a
    of a term's template scales with 1 / the scale of the term's column a, so |theta_i|, at
    least a thousandth of the largest entry of its row, or for a row of zeros 1 / the root
    mean square of that column."""
    out = np.abs(theta).astype(float)
    for t, slots in zip(model.design.reterms, _term_slots(model)):
        for a in range(t.k):
            pos = [p for (i, _), p in slots.items() if i == a]
            largest = out[pos].max()
            if largest > 0:
                out[pos] = np.maximum(out[pos], 1e-3 * largest)
            else:
                rms = np.sqrt(np.mean(t.X[:, a] ** 2))
                out[pos] = 1.0 / rms if rms > 0 else 1.0
    return out


def _inverse_sqrt_curvature(slc: _Slice) -> np.ndarray:
    """1 / sqrt(d^2 f / dx_i^2) at the optimum, by differences of the analytic gradient with
    steps relative to x's size (one-sided next to a bound), within 1e-4 to 1e4 times that size
    (the size itself for a flat coordinate; 1 for a held one)."""
    x, v, size = slc.x_hat, slc.hat, slc.x_scale
    assert size is not None, "the slice's x_scale is set before its curvature is taken"
    out = np.ones(x.size)
    for i, (lo, hi) in enumerate(slc.bounds(v)):
        if lo is not None and lo == hi:
            continue
        h = 1e-4 * size[i]
        steps = (-h, h) if lo is None or x[i] - h >= lo else (h, 2 * h)
        g = []
        for t in steps:
            xt = x.copy()
            xt[i] += t
            g.append(slc.fg(xt, v)[1][i])
        d = (g[1] - g[0]) / (steps[1] - steps[0])
        ok = np.isfinite(d) and d > 0
        out[i] = np.clip(1.0 / np.sqrt(d), 1e-4 * size[i], 1e4 * size[i]) if ok else size[i]
    return out


class _Trace:
    """The points (v, zeta, inner optimum x) of one parameter's profile, traced outwards."""

    def __init__(self, slc: _Slice, base: float, label: str, delta: float, on_step=None):
        self.slc, self.base, self.label, self.delta = slc, base, label, delta
        self.on_step = on_step  # called with the number of points after each evaluation
        self.points = [(slc.hat, 0.0, slc.x_hat.copy())]
        self.lowest = np.inf  # the lowest deviance - base seen (below -DEV_TOL: not at the optimum)
        self.scale: np.ndarray | None = None  # the inner coordinates' scale (from the first evaluation on)
        self.warned = False  # about a non-monotone profile

    def zeta(self, v, x0):
        """zeta at v, the inner minimisation started from x0; the point is kept.  L-BFGS-B runs
        in y = (x - x_hat) / s, s the inverse square roots of the Hessian's diagonal at the
        optimum: a quarter fewer evaluations than in x."""
        slc = self.slc
        if self.scale is None:
            self.scale = _inverse_sqrt_curvature(slc)
        s, xc = self.scale, slc.x_hat
        bnds = slc.bounds(v)
        lo = np.array([-np.inf if b[0] is None else b[0] for b in bnds])
        hi = np.array([np.inf if b[1] is None else b[1] for b in bnds])
        y_bounds = list(
            zip(np.where(np.isfinite(lo), (lo - xc) / s, None), np.where(np.isfinite(hi), (hi - xc) / s, None))
        )

        def fg_y(y):
            f, g = slc.fg(xc + s * y, v)
            if not (np.isfinite(f) and np.all(np.isfinite(g))):
                return np.inf, np.zeros_like(y)
            return f, g * s

        x0 = np.clip(x0, lo, hi)
        if slc.start is not None:
            x0 = slc.start(x0, v)
        if not np.isfinite(fg_y((x0 - xc) / s)[0]):  # an extrapolated start beyond the feasible set
            x0 = np.clip(self.nearest(v), lo, hi)
            x0 = slc.start(x0, v) if slc.start is not None else x0
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            res = optimize.minimize(
                fg_y,
                (x0 - xc) / s,
                jac=True,
                method="L-BFGS-B",
                bounds=y_bounds,
                options=slc.inner_options or INNER_OPTIONS,
            )
        if not np.all(np.isfinite(res.x)):
            res.x, res.fun = (x0 - xc) / s, fg_y((x0 - xc) / s)[0]
        dev, x = float(res.fun), np.clip(xc + s * np.asarray(res.x, dtype=float), lo, hi)
        if np.isfinite(dev):
            self.lowest = min(self.lowest, dev - self.base)
            z = float(np.sign(v - slc.hat) * np.sqrt(max(0.0, dev - self.base)))
        else:  # no finite deviance with the parameter at v (a correlation matrix at its edge)
            z = float(np.sign(v - slc.hat) * np.inf)
        self.points.append((float(v), z, x))
        if self.on_step is not None:
            self.on_step(len(self.points))
        return z, x

    def nearest(self, v):
        """The inner optimum of the finite point nearest to v."""
        return min((p for p in self.points if np.isfinite(p[1])), key=lambda p: abs(p[0] - v))[2].copy()

    def start_near(self, v):
        """A start for v: the nearest point's optimum, extrapolated linearly along the next nearest."""
        pts = sorted((p for p in self.points if np.isfinite(p[1])), key=lambda p: abs(p[0] - v))
        if len(pts) < 2 or pts[0][0] == pts[1][0]:
            return pts[0][2].copy()
        (v0, _, x0), (v1, _, x1) = pts[0], pts[1]
        t = (v - v0) / (v0 - v1)
        return x0 + t * (x0 - x1) if abs(t) <= 2 else x0.copy()

    def trace(self, z_target):
        """Both sides, from the estimate and the shifted point (lme4's start of both)."""
        slc = self.slc
        v1 = slc.hat + slc.first_step
        z1, x1 = self.zeta(v1, slc.x_hat)
        for direction in (1, -1):
            self._side(direction, z_target, (v1, z1, x1))

    def _side(self, direction, z_target, first):
        """Step outwards in ``direction`` until |zeta| >= z_target or the bound: each step
        delta on the zeta scale by the slope of the last two points (at most MAX_MULT times
        the last step; doubling it where the slope is not positive)."""
        slc = self.slc
        bound = slc.upper if direction > 0 else slc.lower
        if slc.hat == bound:
            return
        hat = (slc.hat, 0.0, slc.x_hat)
        prev, last = (hat, first) if np.sign(first[0] - slc.hat) == direction else (first, hat)
        for _ in range(MAX_STEPS):
            if np.sign(last[0] - slc.hat) == direction and (not abs(last[1]) < z_target or last[0] == bound):
                return
            dv, dz = last[0] - prev[0], last[1] - prev[1]
            step = self.delta * abs(dv / dz) if dz * dv > 0 else 2.0 * abs(dv)
            step = min(step, MAX_MULT * abs(dv))
            v = min(bound, last[0] + step) if direction > 0 else max(bound, last[0] - step)
            x0 = last[2] + (last[2] - prev[2]) * ((v - last[0]) / dv)
            z, x = self.zeta(v, x0)
            prev, last = last, (v, z, x)
        warnings.warn(
            f"the profile of {self.label} did not reach zeta = {z_target:.3g} in {MAX_STEPS} steps",
            ConvergenceWarning,
            stacklevel=4,
        )

    def end(self, target):
        """Where zeta = target: the root of the spline through the points between the last one
        inside and the first one past the target, checked by an evaluation there (which joins
        the points) until it is within ROOT_TOL; the bound when the profile reaches it first."""
        slc = self.slc
        direction = 1.0 if target > 0 else -1.0
        bound = slc.upper if direction > 0 else slc.lower
        v_new = np.nan
        for _ in range(8):
            outward = sorted(
                (p for p in self.points if direction * (p[0] - slc.hat) >= 0), key=lambda p: direction * p[0]
            )
            past = next((k for k, p in enumerate(outward) if not direction * p[1] < abs(target)), None)
            if past is None:  # never past the target: the bound, if the profile got there
                return bound if outward[-1][0] == bound else np.nan
            left, right = outward[past - 1], outward[past]
            if abs(right[1] - target) <= ROOT_TOL:
                return right[0]
            if np.isfinite(right[1]):
                v_new = self._spline_root(target, left[0], right[0])
            else:  # no deviance at the outer point: halve the bracket
                v_new = 0.5 * (left[0] + right[0])
            z_new, _ = self.zeta(v_new, self.start_near(v_new))
            if abs(z_new - target) <= ROOT_TOL:
                return v_new
        return v_new

    def _spline_root(self, target, a, b):
        """The root of the natural cubic spline through the finite points in [a, b] (linear
        interpolation where the points are not increasing: a non-monotone profile)."""
        pts = sorted({p[0]: p[1] for p in self.points if np.isfinite(p[1])}.items())
        v = np.array([p[0] for p in pts])
        z = np.array([p[1] for p in pts])
        lo, hi = min(a, b), max(a, b)
        if v.size >= 3 and np.all(np.diff(z) > 0):
            spl = interpolate.CubicSpline(v, z, bc_type="natural")
            roots = [r for r in spl.solve(target, extrapolate=False) if lo <= r <= hi]
            if roots:
                return float(roots[0])
        elif not self.warned:
            warnings.warn(
                f"the profile of {self.label} is not monotone (as lme4 warns: non-monotonic "
                "profile); its interval's ends are interpolated linearly",
                ConvergenceWarning,
                stacklevel=5,
            )
            self.warned = True
        za, zb = np.interp([a, b], v, z)
        return float(a + (target - za) * (b - a) / (zb - za)) if zb != za else 0.5 * (a + b)


def _profile_all(fit, level, old_names, progress, n_points=0):
    """Every parameter's profile traced to the level's quantile: the names, the interval ends
    and (``n_points``) zeta at that many points across each interval."""
    fit_ml = ml_fit(fit)
    names = ran_par_names(fit_ml, old_names=old_names) + list(fit_ml.fixef.index)
    cutoff = np.sqrt(stats.chi2.ppf(1 - ALPHA_MAX, len(names)))
    try:
        ends, grids = trace_profiles(
            _slices(fit_ml, cutoff * DELTA_CUTOFF), names, fit_ml.objective, level, progress, n_points
        )
    finally:
        fit_ml.model(fit_ml.theta)  # leave the fit's model at its optimum
    return names, ends, grids


def trace_profiles(slices, names, base, level, progress=None, n_points=0, scales=None):
    """Trace each slice's profile (:class:`_Trace`, zeta against the deviance ``base`` at the
    optimum) to the quantile of ``level``: the interval ends per parameter and (``n_points``)
    (name, value, zeta) at that many points across each interval.  ``scales``: the inner
    coordinates' scale per slice (default: from the curvature of its gradient)."""
    cutoff = np.sqrt(stats.chi2.ppf(1 - ALPHA_MAX, len(names)))
    delta = cutoff * DELTA_CUTOFF
    z = stats.norm.ppf(0.5 + level / 2)
    ends, grids, traces = [], [], []
    bar = Progress("profile", len(names), "parameters", on=progress)
    try:
        for i, (slc, name) in enumerate(zip(slices, names)):

            def on_step(k, i=i, name=name):  # the share of a parameter's work done, roughly
                bar.update(i + min(k / EXPECTED_STEPS, 0.95), name)

            tr = _Trace(slc, base, name, delta, on_step)
            if scales is not None:
                tr.scale = scales[i]
            traces.append(tr)
            if not np.isfinite(slc.hat):  # a correlation of a term whose sd is 0
                ends.append((np.nan, np.nan))
                continue
            tr.trace(z)
            lo, hi = tr.end(-z), tr.end(z)
            ends.append((lo, hi))
            if n_points and np.isfinite(lo) and np.isfinite(hi):
                for v in np.linspace(lo, hi, n_points):
                    known = [p[1] for p in tr.points if p[0] == v and np.isfinite(p[1])]
                    grids.append((name, float(v), known[0] if known else tr.zeta(v, tr.start_near(v))[0]))
            bar.update(i + 1, name)
    finally:
        bar.close()
    for tr in traces:
        if tr.lowest < -DEV_TOL:
            warnings.warn(
                f"the profile of {tr.label} found a deviance {-tr.lowest:.3g} below the fit's: "
                "the fit is not at its optimum, and its profile intervals are not trustworthy",
                ConvergenceWarning,
                stacklevel=4,
            )
    return ends, grids


@with_fit_blas_threads
def confint_profile(fit, level: float = 0.95, old_names: bool = True, progress=None) -> pd.DataFrame:
    """Profile intervals for every parameter, named as lme4 names them: ``.sig01, ..., .sigma``
    (lme4's default oldNames = TRUE) or, with ``old_names=False``, ``sd_x|g, cor_x.y|g, sigma``.
    ``progress``: one updating line on stderr (None: if the work will take more than a few
    seconds)."""
    names, ends, _ = _profile_all(fit, level, old_names, progress)
    pct = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
    return pd.DataFrame(ends, index=names, columns=pct)


@with_fit_blas_threads
def profile(fit, level: float = 0.99, n: int = 9, old_names: bool = True, progress=None) -> pd.DataFrame:
    """The profiles themselves: for every parameter, zeta at ``n`` points across its ``level``
    profile interval (long format: .par, value, zeta); names and ``progress`` as in
    :func:`confint_profile`."""
    _, _, grids = _profile_all(fit, level, old_names, progress, n_points=n)
    return pd.DataFrame(grids, columns=[".par", "value", "zeta"])
