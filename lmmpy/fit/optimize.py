"""Minimise the profiled criterion over theta with a bounded optimizer, recording what it did.

- "cobyqa": scipy's COBYQA, a derivative-free trust-region method with quadratic models and
  bound constraints, the successor of Powell's BOBYQA that lme4 uses.  On every lme4
  reference model it reaches lme4's optimum or a lower one, but its own bookkeeping costs
  about 1 ms an iteration, which dominates small models.
- "l-bfgs-b": quasi-Newton with the analytic gradient (:mod:`lmmpy.fit.gradient`): few
  evaluations and little overhead, but a diagonal theta that reaches exactly 0 is a
  stationary point it cannot leave (the criterion is even in it), so it needs restart_edge
  and a check of boundary results.
- "bfgs": projected BFGS (:mod:`lmmpy.fit.pbfgs`) with the analytic gradient taken only at
  accepted points; for large models, where a gradient costs two or three evaluations, fewer
  gradients than L-BFGS-B for the same optimum.
- "auto" (the default, in :func:`lmmpy.lmer.optimize_lmer`): L-BFGS-B (projected BFGS when the
  dense tail block is large), and where its result lies on a boundary, COBYQA too, keeping the
  better.
Nelder-Mead and Powell are there for comparison; they stop short on random-slope models.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, minimize

from .checks import SINGULAR_TOL, is_singular  # noqa: F401 (re-exported)
from .deviance import LmmModel
from .gradient import value_and_gradient
from .lbfgsb import LbfgsbResult, minimize_lbfgsb
from .pbfgs import minimize_pbfgs
from .status import GRADIENT_FAILURES, HESSIAN_FAILURES, Check, FitStatus, Note

# the statuses of a failed fit (lme4's negative convergence codes): the EM fallback's trigger
FAILED = frozenset(
    {
        FitStatus.OPTIMIZER_ERROR,
        FitStatus.NONFINITE,
        FitStatus.NOT_CONVERGED,
        FitStatus.FAILED_GRADIENT_CHECK,
        FitStatus.FAILED_HESSIAN_CHECK,
    }
)

OPTIMIZERS = {
    "cobyqa": "COBYQA",
    "l-bfgs-b": "L-BFGS-B",
    "bfgs": "BFGS",
    "nelder-mead": "Nelder-Mead",
    "powell": "Powell",
}


@dataclass
class OptSummary:
    """What the optimizer did (MixedModels.jl's OptSummary): its status as data
    (:mod:`lmmpy.fit.status`), the text made from it when shown (``messages``, ``notes``)."""

    optimizer: str
    theta0: np.ndarray
    lower: np.ndarray
    theta: np.ndarray | None = None
    fmin: float = np.nan
    n_evals: int = 0
    message: str = ""
    converged: bool = False
    seconds: float = 0.0
    warnings: list = field(default_factory=list)
    trace: list = field(default_factory=list)  # EM: the criterion at each iteration
    findings: list = field(default_factory=list)  # CheckFindings at the optimum (lme4's conv$lme4$messages)
    gradient: np.ndarray | None = None  # finite-difference gradient and Hessian at the optimum
    hessian: np.ndarray | None = None
    fit_notes: list = field(default_factory=list)  # FitNotes: restarts, EM start, EM fallback, rescaling
    scaling: Any = None  # the ColumnScaling the model was fitted on (lmmpy.fit.scaling), None for none
    blas_threads: int | None = None  # the BLAS threads the fit ran with (None: unknown, no BLAS found)
    failure: FitStatus | None = None  # why converged is False, where the optimizer's word is not the reason
    beta: np.ndarray | None = None  # a generalized model's fixed effects (optimised with theta)
    hessian_exact: np.ndarray | None = None  # glmer: the exact Laplace deviance's Hessian, when `hessian` is lme4's
    gradient_lme4: np.ndarray | None = None  # glmer: the gradient of lme4's PIRLS-path deviance

    @property
    def return_code(self) -> int:
        return 0 if self.converged else 1

    @property
    def messages(self) -> list:
        """The checks' findings as lme4 words them."""
        return [str(f) for f in self.findings]

    @property
    def notes(self) -> list:
        """The fit's notes as text."""
        return [str(n) for n in self.fit_notes]

    @property
    def status(self) -> FitStatus:
        """The fit's status, the most serious that applies (see :class:`FitStatus`)."""
        if not self.converged:
            return self.failure or FitStatus.NOT_CONVERGED
        if not np.isfinite(self.fmin):
            return FitStatus.NONFINITE
        kinds = {f.kind for f in self.findings}
        if kinds & GRADIENT_FAILURES:
            return FitStatus.FAILED_GRADIENT_CHECK
        if kinds & HESSIAN_FAILURES:
            return FitStatus.FAILED_HESSIAN_CHECK
        if any(n.kind is Note.EM_FALLBACK for n in self.fit_notes):
            return FitStatus.EM_FALLBACK
        if Check.BOUNDARY in kinds:
            return FitStatus.BOUNDARY
        return FitStatus.CONVERGED

    @property
    def failed(self) -> bool:
        """An error, a non-finite criterion, no convergence, or a failed gradient/Hessian check."""
        return self.status in FAILED


def optimize_lmm(model: LmmModel, theta0=None, optimizer: str = "l-bfgs-b", options=None) -> OptSummary:
    """Minimise ``model``'s criterion; leaves the model at the optimum and returns the record."""
    theta0 = model.optimizer_start() if theta0 is None else np.atleast_1d(np.asarray(theta0, dtype=float))
    lower = model.lower
    opt = OptSummary(optimizer=optimizer, theta0=theta0.copy(), lower=lower.copy())
    method = OPTIMIZERS.get(str(optimizer).lower())
    if method is None:
        from ..errors import LmmError

        raise LmmError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)} (or method='em')")
    opts: dict[str, Any] = {
        "COBYQA": {"initial_tr_radius": 0.2, "final_tr_radius": 1e-7, "maxfev": 10000},
        "L-BFGS-B": {"ftol": 1e-12, "gtol": 1e-7, "maxiter": 1000},
    }.get(method, {})
    opts.update(options or {})
    fun, jac = (value_and_gradient(model), True) if method == "L-BFGS-B" else (model.quick_criterion(), None)
    start_evals = model.n_evals
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if method == "L-BFGS-B":
                res: Any = at_rounding_level(fun, minimize_lbfgsb(fun, theta0, lower, **opts), lower, opts)
            elif method == "BFGS":
                res = minimize_pbfgs(model, value_and_gradient(model), theta0, lower, theta_scale(model), **opts)
            else:
                bounds = Bounds(lower, np.full_like(lower, np.inf))
                res = minimize(fun, theta0, method=method, jac=jac, bounds=bounds, options=opts)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as e:
            opt.seconds = time.perf_counter() - t0
            opt.theta, opt.fmin = theta0.copy(), float(model(theta0))
            opt.message, opt.converged = f"the optimizer stopped with an error: {e}", False
            opt.failure = FitStatus.OPTIMIZER_ERROR
            return opt
    opt.seconds = time.perf_counter() - t0
    opt.warnings = [str(w.message) for w in caught]
    theta = np.maximum(np.asarray(res.x, dtype=float), lower)
    # the optimizer's last evaluation need not be its best point: leave the model at the optimum
    opt.fmin = float(model(theta))
    opt.theta = theta
    opt.n_evals = model.n_evals - start_evals
    opt.message = str(res.message)
    opt.converged = bool(res.success) and np.isfinite(opt.fmin)
    return opt


# a fresh L-BFGS-B run that lowers the criterion by less than this (relative) has gained nothing
ROUNDING_GAIN = 1e-12


def at_rounding_level(fun, res: LbfgsbResult, lower, opts) -> LbfgsbResult:
    """L-BFGS-B's result, with a line search that failed at the criterion's rounding level taken
    as convergence.  Near an optimum a step along the gradient lowers the criterion by less than
    its rounding (~1e-12 relative: the S&B slope model's REML fit stops with max|g| 3e-4 at
    24870.5387, where a step of 1e-6 would gain 3e-10 against rounding of 2.5e-8), and the line
    search reports ABNORMAL.  A fresh run from there (its memory reset) that gains nothing
    either confirms the point; one that gains more is the result.  The convergence checks
    still judge the point (lme4's scaled gradient), and a real failure stays one."""
    if res.success or not res.message.startswith("ABNORMAL"):
        return res
    again = minimize_lbfgsb(fun, res.x, lower, **opts)
    again.nfev += res.nfev
    if again.success or again.fun < res.fun - ROUNDING_GAIN * abs(res.fun):
        return again
    message = "CONVERGENCE: the line search stopped at the criterion's rounding level (a fresh run gained nothing)"
    return LbfgsbResult(res.x, res.fun, True, message, again.nfev, res.nit + again.nit)


def theta_scale(model: LmmModel) -> np.ndarray:
    """A diagonal inverse-Hessian guess for theta: 1 / (4 l) for each entry of a term with l
    levels (the curvature EM's update implies at theta = 1)."""
    return np.concatenate([np.full(k * (k + 1) // 2, 1.0 / (4.0 * l)) for l, k in model.sizes])


def evaluate_at(model: LmmModel, theta) -> OptSummary:
    """No optimisation: the model evaluated at a given theta (lme4's ``maxfun = 0`` start)."""
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    opt = OptSummary(optimizer="none", theta0=theta.copy(), lower=model.lower.copy(), theta=theta.copy())
    opt.fmin = float(model(theta))
    opt.n_evals, opt.converged, opt.message = 1, bool(np.isfinite(opt.fmin)), "evaluated at the given theta"
    return opt
