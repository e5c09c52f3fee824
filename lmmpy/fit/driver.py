"""The optimizer policy of :func:`lmmpy.lmer`: which optimizer, from where, and what to do when
it fails; lme4's ``optimizeLmer`` with lmmpy's safeguards.

- "auto": L-BFGS-B with the analytic gradient, or projected BFGS for a wide dense tail block
  (BFGS_MIN_TAIL), where a gradient costs two or three evaluations; a boundary (or failed)
  result is confirmed by COBYQA from the start, or, for many parameters
  (COBYQA_FROM_START_MAX) and for the bootstrap's refits (``control.confirm_boundary``), by the
  gradient method again from its optimum nudged off the bounds and from lme4's start; the better
  optimum is kept.
- restart_edge: a theta left on a zero bound is restarted off it when that lowers the
  criterion (:func:`lmmpy.fit.checks.restart_point`).
- the EM fallback: a failed fit (:attr:`OptSummary.failed`) is refitted by EM, and the
  optimizer continues from EM's estimate.
- the checks at the optimum (:mod:`lmmpy.fit.checks`) make the record's findings
  (:mod:`lmmpy.fit.status`).
- a model with badly scaled columns is fitted on rescaled ones (:mod:`lmmpy.fit.scaling`);
  the BLAS threads are set once for the whole fit (:mod:`lmmpy.linalg.threads`).
"""

from __future__ import annotations

import numpy as np

from ..errors import LmmError, require_bool
from ..linalg.threads import blas_threads_for_fit, current_blas_threads, dense_tail_order
from .checks import LmerControl, check_convergence, is_singular, restart_point
from .deviance import LmmModel
from .em import fit_em
from .optimize import OptSummary, evaluate_at, optimize_lmm
from .scaling import on_internal_scale
from .status import FitNote, FitStatus, Note


def _check(model, opt, control):
    opt.findings, opt.gradient, opt.hessian = check_convergence(model, opt.theta, opt.fmin, control)
    # a non-finite criterion or gradient at the optimum is a failed fit whatever the optimizer
    # said: its status (and the summary's convergence code) must not read OK
    finite = np.isfinite(opt.fmin) and (opt.gradient is None or np.all(np.isfinite(opt.gradient)))
    if opt.converged and not finite:
        opt.converged = False
        opt.failure = FitStatus.NONFINITE
        opt.message = (
            "the criterion is not finite at the optimum"
            if not np.isfinite(opt.fmin)
            else "the gradient is not finite at the optimum"
        )
    return opt


def _optimize_once(model, start, optimizer, control, notes):
    """One optimizer run from ``start``, restarted off zero bounds where that helps."""
    opt = optimize_lmm(model, theta0=start, optimizer=optimizer, options=control.optimizer_options)
    for _ in range(5 if control.restart_edge else 0):
        restart = restart_point(model, opt.theta, opt.fmin) if opt.converged else None
        if restart is None:
            break
        again = optimize_lmm(model, theta0=restart, optimizer=optimizer, options=control.optimizer_options)
        if not again.fmin < opt.fmin:
            break
        again.n_evals += opt.n_evals
        opt = again
        notes.append(FitNote(Note.RESTART_EDGE))
    return opt


COBYQA_FROM_START_MAX = 10  # parameters
CONFIRM_BOUNDARY = ("auto", "cobyqa", "gradient")
# a dense tail block this wide makes a gradient cost two or three evaluations: projected BFGS,
# which takes gradients only at accepted points, instead of L-BFGS-B
BFGS_MIN_TAIL = 100


def _optimize(model, start, optimizer, control, notes):
    if optimizer != "auto":
        return _optimize_once(model, start, optimizer, control, notes)
    gradient_method = "bfgs" if model.q_tail + model.p >= BFGS_MIN_TAIL else "l-bfgs-b"
    opt = _optimize_once(model, start, gradient_method, control, notes)
    if opt.converged and not is_singular(opt.theta, model.lower, control.singular_tol):
        opt.optimizer = f"auto:{gradient_method}"
        return opt
    # a boundary (or failed) result of the gradient method: confirm it with COBYQA from the
    # start; for many parameters, where a derivative-free run costs thousands of evaluations,
    # by the gradient method again from its optimum nudged off the bounds, and from lme4's
    # start if the fit began elsewhere (a refit from the fitted theta: a nudge alone can fall
    # back into the boundary's basin)
    confirm = control.confirm_boundary
    if confirm == "auto":
        confirm = "gradient" if model.theta.size > COBYQA_FROM_START_MAX else "cobyqa"
    if opt.converged and confirm == "gradient":
        starts = [np.where((model.lower == 0) & (opt.theta < 1e-2), 1e-2, opt.theta)]
        if start is not None and not np.array_equal(np.asarray(start, dtype=float), model.theta_start()):
            starts.append(model.theta_start())
        others = [_optimize_once(model, s, gradient_method, control, notes) for s in starts]
        other = min(others, key=lambda o: o.fmin if o.converged else np.inf)
        other.n_evals = sum(o.n_evals for o in others)
    else:
        other = _optimize_once(model, start, "cobyqa", control, notes)
    best = other if (other.converged and other.fmin < opt.fmin) or not opt.converged else opt
    best.optimizer = f"auto:{other.optimizer if best is other else gradient_method}"
    best.n_evals = opt.n_evals + other.n_evals
    return best


def optimize_lmer(
    model: LmmModel, start=None, optimizer: str = "auto", method: str = "optimizer", control=None
) -> OptSummary:
    """Minimise the criterion and check the optimum as lme4 does.

    ``method="em"`` fits by EM alone.  Otherwise ``optimizer`` runs from ``start`` (or, with
    ``start="em"``, from a few EM steps); a theta left on a zero bound is restarted when
    leaving the bound helps (lme4's restart_edge); and if the optimizer fails, EM refits the
    model and the optimizer continues from EM's estimate.  ``optimizer=None`` only evaluates
    the model at ``start``.  A model with badly scaled columns is fitted, and checked, on
    rescaled ones (:mod:`lmmpy.fit.scaling`); ``start`` and the result are in ``model``'s theta
    and the model is left at the optimum.  The BLAS threads are set once for all of it
    (:mod:`lmmpy.linalg.threads`, ``control.blas_threads``) and recorded in
    ``optsum.blas_threads``.
    """
    control = LmerControl.coerce(control)
    for switch in ("check_conv", "restart_edge", "fallback_em"):  # a string such as "no" is truthy
        require_bool(f"control's {switch}", getattr(control, switch))
    if control.confirm_boundary not in CONFIRM_BOUNDARY:
        raise LmmError(
            f"control's confirm_boundary must be one of {', '.join(map(repr, CONFIRM_BOUNDARY))}, "
            f"not {control.confirm_boundary!r}"
        )
    with blas_threads_for_fit(dense_tail_order(model.sizes, model.p), control.blas_threads):
        opt = on_internal_scale(model, lambda m, s: _optimize_lmer(m, s, optimizer, method, control), start)
        opt.blas_threads = current_blas_threads()
        model(opt.theta)  # the working point ends at the optimum (the fit itself reads model.factor)
    return opt


def _optimize_lmer(model, start, optimizer, method, control) -> OptSummary:
    if method not in ("optimizer", "em"):
        raise LmmError(f"method must be 'optimizer' or 'em', not {method!r}")
    if method == "em":
        if isinstance(start, str):
            raise LmmError("start='em' is for the optimizer; method='em' starts from lme4's theta")
        return _check(model, fit_em(model, theta0=start), control)
    if optimizer is None:
        if start is None or isinstance(start, str):
            raise LmmError("optimizer=None needs a start: the theta to evaluate the model at")
        return _check(model, evaluate_at(model, start), control)

    notes = []
    if isinstance(start, str):
        if start != "em":
            raise LmmError(f"start must be a theta vector or 'em', not {start!r}")
        em = fit_em(model, max_iter=12, tol=1e-6)
        start = em.theta
        notes.append(FitNote(Note.EM_START, steps=em.n_evals))
    opt = _optimize(model, start, optimizer, control, notes)
    _check(model, opt, control)
    if opt.failed and control.fallback_em:
        reason = str(opt.findings[0]) if opt.findings and opt.converged else opt.message
        em = fit_em(model, theta0=start)
        again = _optimize(model, em.theta, optimizer, control, notes)
        best = again if (again.converged and again.fmin <= em.fmin) else em
        _check(model, best, control)
        best.n_evals += opt.n_evals + (em.n_evals if best is again else 0)
        notes.append(
            FitNote(
                Note.EM_FALLBACK, optimizer=opt.optimizer, reason=reason, steps=em.n_evals, kept_em=best is not again
            )
        )
        opt = best
    opt.fit_notes = notes + opt.fit_notes
    return opt
