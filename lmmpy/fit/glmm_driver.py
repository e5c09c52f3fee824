r"""The optimizer policy of :func:`lmmpy.glmer`, lme4's two stages with lmmpy's optimizers:

1. nAGQ = 0: the deviance minimised over theta alone, beta found inside PIRLS with the
   conditional modes (started from the GLM without random effects); derivative-free (COBYQA,
   lme4's stage uses BOBYQA).  For ``nAGQ=0`` this is the fit; otherwise only the next
   stage's start, so it stops at a coarser trust-region radius (``STAGE0_START_RADIUS``).
2. nAGQ >= 1: the Laplace (or adaptive Gauss-Hermite) deviance minimised over (theta, beta)
   from stage 1's estimates by Newton steps (the chord method, :func:`_newton`; L-BFGS-B where
   the Hessian is not positive definite).  The derivatives (:func:`criterion`): for canonical
   links under the Laplace approximation, the analytic gradient
   (:mod:`lmmpy.fit.laplace_gradient`) and Hessians from its differences (2 n PIRLS runs);
   otherwise central differences of the deviance and lme4's deriv12 (2 n^2 + 1).  PIRLS is
   warm-started, so the deviance is smooth to ~1e-12 relative.

At the optimum, as lme4's checkConv: the singular check, and (not singular) the scaled
gradient and the Hessian checks on that gradient and Hessian over (theta, beta).  The fixed
effects' covariance (:mod:`lmmpy.results.glmm`) comes, as lme4's, from deriv12's Hessian of
lme4's PIRLS-path deviance (``GlmerControl.hessian="lme4"``, 2 n^2 + 1 evaluations), or
from the exact one (``"exact"``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, minimize

from ..errors import LmmError
from .checks import LmerControl, derivative_findings, deriv12, is_singular
from .optimize import OptSummary
from .laplace_gradient import laplace_gradient, supports_analytic_gradient
from .pirls import GlmmModel, PirlsError
from .scaling import ColumnScaling
from .status import Check, CheckFinding, FitStatus

FD_STEP = 1e-5  # central differences for the optimizer's gradient
DERIV_STEP = 1e-4  # lme4's deriv12 step for the checks and the Hessian
# COBYQA's final trust-region radius when stage 0 is a start: its linear predictor is lme4's
# lp0 too, where lme4's PIRLS-path deviance (its Hessian, vcov) starts, and lme4's standard
# errors at lme4's estimates move with it: 1e-3 keeps them as at 1e-6 (2.5e-7 relative on
# cbpp), 5e-2 moves them by ~1e-5 (a printed p-value digit)
STAGE0_START_RADIUS = 1e-3


@dataclass
class GlmerControl(LmerControl):
    """lme4's glmerControl: lmerControl's checks and tolerances, and PIRLS's."""

    pirls_tol: float = 1e-10  # relative change of the penalised deviance at which PIRLS stops
    pirls_max_iter: int = 100
    nagq0_init: bool = True  # lme4's nAGQ0initStep: start the Laplace stage from the nAGQ = 0 fit
    calc_derivs: bool = True  # the Hessian at the optimum (checks and vcov)
    # the Hessian behind vcov (nAGQ = 1): "lme4", that of lme4's PIRLS evaluation of the
    # deviance (lme4's standard errors), or "exact", that of the converged Laplace deviance
    hessian: str = "lme4"

    @classmethod
    def coerce(cls, control) -> "GlmerControl":
        if isinstance(control, LmerControl) and not isinstance(control, cls):
            return cls(**{k: getattr(control, k) for k in LmerControl.__dataclass_fields__})
        out = super().coerce(control)
        assert isinstance(out, cls)
        return out


def _central_gradient(fun, x, fx, step=FD_STEP):
    g = np.empty(x.size)
    for i in range(x.size):
        h = step * max(1.0, abs(x[i]))
        e = np.zeros(x.size)
        e[i] = h
        g[i] = (fun(x + e) - fun(x - e)) / (2 * h)
    return g


class FiniteDifferences:
    """The Laplace (or AGQ) deviance over x = (theta, beta) with central-difference
    derivatives: the gradient 2 n deviances, the Hessian lme4's deriv12 (2 n^2 + 1)."""

    newton_max_parameters = 12  # beyond, deriv12's 2 n^2 evaluations cost more than L-BFGS-B's iterations
    cheap_steering = False  # derivatives(steering=True) are the accurate ones

    def __init__(self, model: GlmmModel):
        self.model, self.ntheta = model, model.lower.size

    def __call__(self, x) -> float:
        return self.model.deviance(x[: self.ntheta], x[self.ntheta :])

    def gradient(self, x, fx, step=DERIV_STEP) -> np.ndarray:
        return _central_gradient(self, x, fx, step)

    def derivatives(self, x, fx, steering: bool = False) -> tuple:
        """(gradient, Hessian) at x; ``steering``: a Hessian only to steer Newton steps (which
        may be cheaper and less accurate)."""
        return deriv12(self, x, delta=DERIV_STEP, fx=fx)


class AnalyticGradient(FiniteDifferences):
    """The Laplace deviance with its analytic gradient (:mod:`lmmpy.fit.laplace_gradient`),
    the Hessian by central differences of it: 2 n PIRLS runs and gradients instead of
    deriv12's 2 n^2 + 1 deviances, and more accurate (the gradient is exact to PIRLS's
    convergence, where deriv12 divides the deviance's rounding by its step squared).  The
    PIRLS result of the last deviance is kept: the gradient at that point costs no PIRLS run."""

    newton_max_parameters = 100  # a Hessian costs 2 n gradients
    cheap_steering = True  # steering Hessians by forward differences

    def __init__(self, model: GlmmModel):
        super().__init__(model)
        self._last: tuple | None = None  # (x, the model's evaluation count, PIRLS result)

    def _pirls(self, x):
        nt = self.ntheta
        res = self.model.pirls(x[:nt], x[nt:])
        self._last = (x.copy(), self.model.n_evals, res)
        return res

    def __call__(self, x) -> float:
        try:
            return self._pirls(x).deviance
        except (PirlsError, np.linalg.LinAlgError, FloatingPointError):
            self._last = None
            return np.inf

    def gradient(self, x, fx=None, step=DERIV_STEP) -> np.ndarray:
        last = self._last
        if last is not None and last[1] == self.model.n_evals and np.array_equal(last[0], x):
            res = last[2]  # the model's factor and modes are still this point's
        else:
            try:
                res = self._pirls(x)
            except (PirlsError, np.linalg.LinAlgError, FloatingPointError):
                return np.full(x.size, np.nan)
        if not np.isfinite(res.deviance):
            return np.full(x.size, np.nan)
        return laplace_gradient(self.model, res, x[: self.ntheta])

    def derivatives(self, x, fx, steering: bool = False) -> tuple:
        """Central differences of the gradient (error O(h^2)); ``steering``: forward ones
        (O(h), n gradients instead of 2 n: enough to steer Newton steps)."""
        g = self.gradient(x, fx)
        n = x.size
        H = np.empty((n, n))
        with np.errstate(invalid="ignore"):
            for i in range(n):
                e = np.zeros(n)
                e[i] = DERIV_STEP
                if steering:
                    H[i] = (self.gradient(x + e) - g) / DERIV_STEP
                else:
                    H[i] = (self.gradient(x + e) - self.gradient(x - e)) / (2 * DERIV_STEP)
        self(x)  # leave the modes (PIRLS's next start) at x
        return g, (H + H.T) / 2


def criterion(model: GlmmModel) -> FiniteDifferences:
    """The deviance over (theta, beta) with the best derivatives the model has."""
    return AnalyticGradient(model) if supports_analytic_gradient(model) else FiniteDifferences(model)


def _stage0(model: GlmmModel, theta0, beta0, control) -> tuple:
    """Minimise the nAGQ = 0 deviance over theta: (theta, beta, deviance, the PIRLS result
    there or None, evaluations, message, ok)."""
    state: dict = {"beta": beta0.copy(), "best": (np.inf, None, None)}  # best: (D, theta, result)

    def f(theta):
        res = model.nagq0_result(theta, state["beta"])
        if res is None or not np.isfinite(res.deviance):
            return np.inf
        state["beta"] = res.beta
        if res.deviance < state["best"][0]:
            state["best"] = (res.deviance, theta.copy(), res)
        return res.deviance

    lower = model.lower
    # the fit itself for nAGQ = 0; otherwise the Laplace stage's start, which its Newton steps
    # (quadratic near the optimum) take to the optimum (see STAGE0_START_RADIUS)
    radius = 1e-6 if model.nAGQ == 0 else STAGE0_START_RADIUS
    opts = {"initial_tr_radius": 0.2, "final_tr_radius": radius, "maxfev": 5000}
    if control.optimizer_options:
        opts.update(control.optimizer_options.get("stage0", {}))
    res = minimize(f, theta0, method="COBYQA", bounds=Bounds(lower, np.full_like(lower, np.inf)), options=opts)
    theta = np.maximum(res.x, lower)
    _, best_theta, found = state["best"]
    if found is None or not np.array_equal(best_theta, theta):  # COBYQA's answer is its best point as a rule
        found = model.nagq0_result(theta, state["beta"])
    dev, beta = (np.inf, state["beta"]) if found is None else (found.deviance, found.beta)
    return theta, beta, dev, found, int(res.nfev), str(res.message), bool(res.success) and np.isfinite(dev)


def optimize_glmer(model: GlmmModel, start=None, control=None, at=None) -> OptSummary:
    """Fit ``model`` as lme4's glmer does (module docstring); the record's ``theta`` and
    ``beta`` are the estimates, ``fmin`` the deviance, ``hessian`` over (theta, beta).
    ``at=(theta, beta)``: no optimisation, the model evaluated (and checked, its Hessian
    taken) there -- e.g. at lme4's estimates, to compare what follows from them.

    A model with badly scaled columns, or with a term's covariate far from 0 beside the
    term's intercept, is fitted and checked on rescaled and centred columns
    (:mod:`lmmpy.fit.scaling`, ``ColumnScaling.of(design, centre=True)``), and its record
    mapped back: estimates, gradient and Hessians (hence vcov) on the user's scale, the
    deviance evaluated on the user's model at the mapped estimates (and the modes left
    there).  The checks are the internal fit's: lme4's gradient and eigenvalue checks on the
    user's coordinates would flag the parametrisation (a "very large eigenvalue" of beta's
    curvature in units of 1e-3), not the fit.  ``at`` evaluates on the user's own columns."""
    control = GlmerControl.coerce(control)
    scaling = ColumnScaling.of(model.design, centre=True) if at is None else None
    if scaling is None:
        return _optimize_glmer(model, start, control, at)
    t0 = time.perf_counter()
    inner = GlmmModel(
        scaling.internal_design(model.design),
        model.family,
        nAGQ=model.nAGQ,
        pirls_tol=model.tol,
        pirls_max_iter=model.max_iter,
    )
    if start is not None:
        start = np.atleast_1d(np.asarray(start, dtype=float))
        if start.shape != model.lower.shape:
            raise LmmError(f"start has length {start.size}, the model needs {model.lower.size} theta values")
        start = scaling.theta_to_internal(start)
    opt = scaling.glmm_opt_to_user(_optimize_glmer(inner, start, control, None), model)
    opt.n_evals += model.n_evals
    model.pirls(opt.theta, opt.beta, joint=model.nAGQ == 0)  # leave the modes at the optimum
    opt.seconds = time.perf_counter() - t0
    return opt


def _optimize_glmer(model: GlmmModel, start, control: GlmerControl, at) -> OptSummary:
    t0 = time.perf_counter()
    ntheta = model.lower.size
    theta0 = model.theta_start() if start is None else np.atleast_1d(np.asarray(start, dtype=float))
    if theta0.shape != model.lower.shape:
        raise LmmError(f"start has length {theta0.size}, the model needs {ntheta} theta values")
    beta0 = model.glm_start()
    opt = OptSummary(
        optimizer="cobyqa" if model.nAGQ == 0 else "cobyqa+l-bfgs-b", theta0=theta0.copy(), lower=model.lower.copy()
    )
    theta, beta, dev, found, nev, msg, ok = _stage0(model, theta0, beta0, control)
    opt.n_evals = nev
    if found is None:  # stage 0 failed: its last beta, modes from PIRLS (which may fail too)
        found = model.pirls(theta, beta, joint=True)
    lp0 = found.eta  # offset + X beta + Z Lambda u at stage 0's estimates and modes (lme4's lp0)
    if model.nAGQ == 0:
        opt.theta, opt.beta, opt.fmin, opt.message, opt.converged = theta, beta, float(dev), msg, ok
    else:
        if not control.nagq0_init:
            theta, beta = theta0, beta0
        x0 = np.concatenate([theta, beta])
        if at is not None:
            x0 = np.concatenate([np.atleast_1d(np.asarray(a, dtype=float)) for a in at])
            if x0.size != ntheta + model.p:
                raise LmmError(f"at=(theta, beta) needs {ntheta} + {model.p} values, not {x0.size}")
        lower = np.concatenate([model.lower, np.full(beta.size, -np.inf)])

        fun = criterion(model)
        # PIRLS's first start: stage 0's modes, which are those at x0 too (joint modes are the
        # modes at their beta) unless x0 is elsewhere
        model.u = found.u.copy() if control.nagq0_init and at is None else np.zeros(model.q)
        # lme4's Hessian (of its PIRLS-path deviance) is taken at the optimum for vcov: then it
        # serves the checks too, as in lme4, and the exact deviance's is not taken there
        lme4_hessian = control.hessian == "lme4" and model.nAGQ == 1 and control.calc_derivs
        if at is None:
            x, fx, g, H, nit, msg, ok = _newton(fun, x0, lower, control, final_hessian=not lme4_hessian)
            x, fx, snapped = _to_boundary(fun, x, fx, model.lower, control.singular_tol)
            if snapped:  # derivatives at the boundary point (lme4's check.boundary, then its derivs)
                g, H = (fun.gradient(x, fx), None) if lme4_hessian else fun.derivatives(x, fx)
                msg, ok = "converged at a boundary", True
        else:
            x, fx, msg, ok = x0, fun(x0), "evaluated at the given parameters", True
            g, H = None, None  # not an optimum: no convergence checks; the Hessian for vcov below
            if control.calc_derivs and not lme4_hessian:
                g, H = fun.derivatives(x, fx)
        opt.gradient = g
        opt.n_evals += model.n_evals
        opt.message, opt.converged = msg, bool(ok and np.isfinite(fx))
        opt.theta, opt.beta, opt.fmin, opt.hessian = x[:ntheta].copy(), x[ntheta:].copy(), float(fx), H
        if lme4_hessian:
            # the Hessian lme4 reports, hence its vcov: that of its PIRLS's deviance (see
            # GlmmModel.lme4_deviance); the checks take it with the exact deviance's gradient
            opt.hessian_exact = H  # None: not taken
            opt.gradient_lme4, opt.hessian = deriv12(
                lambda v: model.lme4_deviance(v[:ntheta], v[ntheta:], lp0), x, delta=DERIV_STEP
            )
    _check(model, opt, control, checks=at is None)
    opt.seconds = time.perf_counter() - t0
    model.pirls(opt.theta, opt.beta, joint=model.nAGQ == 0)  # leave the modes at the optimum
    return opt


NEWTON_MAX_ITER = 30


def _lbfgsb(fun: FiniteDifferences, x, lower, control):
    """L-BFGS-B with fun's gradient from x: (x, f, iterations, message, success)."""

    def fg(v):
        fv = fun(v)
        if not np.isfinite(fv):
            return np.inf, np.zeros_like(v)
        return fv, fun.gradient(v, fv, FD_STEP)

    opts = {"ftol": 1e-12, "gtol": 1e-5, "maxiter": 1000}
    if control.optimizer_options:
        opts.update(control.optimizer_options.get("stage1", {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = minimize(
            fg, x, method="L-BFGS-B", jac=True, bounds=Bounds(lower, np.full(lower.size, np.inf)), options=opts
        )
    x = np.maximum(res.x, lower)
    return x, fun(x), int(res.nit), str(res.message), bool(res.success)


def _newton(fun: FiniteDifferences, x, lower, control, final_hessian: bool = True):
    """Minimise fun over x >= lower: Newton steps on fun's Hessian H (deriv12's, or differences
    of the analytic gradient), kept fixed while the gradient shrinks (the chord method: H
    varies little near the optimum, so each step gains digits at one gradient), with step
    halving; H is taken anew when a step fails to lower f (these steer the steps: fun's
    cheaper kind), and at the end (the Hessian at the optimum; not ``final_hessian``: None,
    the caller takes another there).  A Hessian that is not positive definite, or many
    parameters, hand over to L-BFGS-B.  Returns (x, f, g and H at x, iterations, message,
    success)."""
    fx = fun(x)
    n = x.size
    message, ok, it = "Newton steps converged", True, 0
    if n > fun.newton_max_parameters:
        x, fx, it, message, ok = _lbfgsb(fun, x, lower, control)
        g, H = fun.derivatives(x, fx) if final_hessian else (fun.gradient(x, fx), None)
        return x, fx, g, H, it, message, ok
    g, H = fun.derivatives(x, fx, steering=True)
    fresh, lbfgs_done = True, False  # fresh: H is at x (a steering one: the final H is taken anew)
    for it in range(1, NEWTON_MAX_ITER + 1):
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return x, fx, g, H, it, "the deviance's derivatives are not finite", False
        try:
            np.linalg.cholesky(H)
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:  # not convex here (a boundary, or far away): a quasi-Newton run
            if lbfgs_done:
                g, H = fun.derivatives(x, fx) if final_hessian else (g, None)
                return x, fx, g, H, it, message, ok
            x, fx, _, message, ok = _lbfgsb(fun, x, lower, control)
            lbfgs_done = True
            g, H = fun.derivatives(x, fx, steering=True)  # then Newton again from its result
            fresh = True
            continue
        pred = 0.5 * float(g @ step)
        if np.all(x - step >= lower) and (
            pred < 1e-12 * (1.0 + abs(fx)) or (pred < 1e-9 * (1.0 + abs(fx)) and np.max(np.abs(g)) < 1e-4)
        ):
            break  # the predicted decrease is below rounding and the gradient small: at the optimum
        t, moved = 1.0, False
        for _ in range(12):
            x1 = np.maximum(x - t * step, lower)
            f1 = fun(x1)
            if f1 < fx:
                moved = True
                break
            t /= 2
        if not moved:
            if fresh:
                break  # no step along the Newton direction of a fresh Hessian lowers f
            g, H = fun.derivatives(x, fx, steering=True)
            fresh = True
            continue
        x, fx = x1, f1
        g = fun.gradient(x, fx)
        fresh = False
    else:
        message, ok = f"no convergence in {NEWTON_MAX_ITER} Newton steps", False
    if not final_hessian:
        return x, fx, g, None, it, message, ok  # g is at x: taken after each step
    if not fresh or fun.cheap_steering:
        g, H = fun.derivatives(x, fx)  # the Hessian at the optimum (checks, vcov)
    return x, fx, g, H, it, message, ok


def _to_boundary(fun, x, fx, theta_lower, tol):
    """Variance parameters left just above their zero bound (below the singular tolerance) set
    to it where the deviance is no higher there (lme4's check.boundary): (x, f, changed)."""
    near = np.flatnonzero((theta_lower == 0) & (x[: theta_lower.size] > 0) & (x[: theta_lower.size] < tol))
    if not near.size:
        return x, fx, False
    x1 = x.copy()
    x1[near] = 0.0
    f1 = fun(x1)
    if f1 <= fx + 1e-10 * (1.0 + abs(fx)):
        return x1, f1, True
    return x, fx, False


def _check(model: GlmmModel, opt: OptSummary, control: GlmerControl, checks: bool = True) -> None:
    """lme4's checkConv at (theta, beta): the findings, gradient and Hessian into the record
    (``checks`` False: the singular check only, for parameters that are not an optimum)."""
    x = np.concatenate([opt.theta, opt.beta])
    singular = is_singular(opt.theta, model.lower, control.singular_tol)
    findings = [CheckFinding(Check.BOUNDARY, tol=control.singular_tol)] if singular else []
    if checks and control.calc_derivs and model.nAGQ > 0:
        if opt.hessian is None or opt.gradient is None:
            g, H = criterion(model).derivatives(x, opt.fmin)
        else:
            g, H = opt.gradient, opt.hessian
        opt.gradient, opt.hessian = g, H
        if control.check_conv and not singular:
            findings += derivative_findings(g, H, control)
    opt.findings = findings
    if opt.converged and not np.isfinite(opt.fmin):
        opt.converged, opt.failure = False, FitStatus.NONFINITE
        opt.message = "the deviance is not finite at the optimum"
