"""``lmer()``: lme4's modular chain, each step usable on its own.

    lformula(formula, data)         -> Design        (formula -> y, X, random-effects terms)
    mk_lmer_devfun(design, REML)    -> LmmModel      (theta -> profiled criterion)
    optimize_lmer(model)            -> OptSummary    (the optimum, and what the optimizer did)
    mk_lmer_fit(model, opt)         -> LmerFit       (estimates, summary, ...)
"""
from __future__ import annotations

import numpy as np

from .errors import LmmError, require_bool
from .fit.checks import LmerControl, check_convergence, restart_point
from .fit.deviance import LmmModel
from .fit.em import fit_em
from .fit.optimize import OptSummary, evaluate_at, optimize_lmm
from .fit.scaling import on_internal_scale
from .formula.design import Design, build_design, caller_env, check_env
from .linalg.threads import blas_threads_for_fit, current_blas_threads, dense_tail_order
from .lmerfit import LmerFit


def lformula(formula, data, factors=(), weights=None, offset=None, env=None) -> Design:
    """Parse an lme4 formula and build y, X and the random-effects terms from ``data``.
    ``env``: the formula's environment (default: the caller's variables; see :func:`lmer`)."""
    env = caller_env(1) if env is None else check_env(env)
    return build_design(formula, data, factors=factors, weights=weights, offset=offset, env=env)


def mk_lmer_devfun(design: Design, REML: bool = True) -> LmmModel:
    """The profiled criterion as a callable of theta (REML criterion or ML deviance)."""
    return LmmModel(design, REML=require_bool("REML", REML))


def _failed(opt: OptSummary) -> bool:
    """The optimizer failed: an error, a non-finite criterion, no convergence, or a failed
    gradient/Hessian check (lme4's negative convergence codes)."""
    bad = ("Model failed to converge", "unable to evaluate", "Gradient contains NAs", "degenerate")
    return (not opt.converged or not np.isfinite(opt.fmin)
            or any(m.startswith(bad) for m in opt.messages))


def _check(model, opt, control):
    opt.messages, opt.gradient, opt.hessian = check_convergence(model, opt.theta, opt.fmin, control)
    # a non-finite criterion or gradient at the optimum is a failed fit whatever the optimizer
    # said: its status (and the summary's convergence code) must not read OK
    finite = np.isfinite(opt.fmin) and (opt.gradient is None or np.all(np.isfinite(opt.gradient)))
    if opt.converged and not finite:
        opt.converged = False
        opt.message = ("the criterion is not finite at the optimum" if not np.isfinite(opt.fmin)
                       else "the gradient is not finite at the optimum")
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
            model(opt.theta)
            break
        again.n_evals += opt.n_evals
        opt = again
        notes.append("restarted off a zero bound (restart_edge)")
    return opt


COBYQA_FROM_START_MAX = 10  # parameters
# a dense tail block this wide makes a gradient cost two or three evaluations: projected BFGS,
# which takes gradients only at accepted points, instead of L-BFGS-B
BFGS_MIN_TAIL = 100


def _optimize(model, start, optimizer, control, notes):
    if optimizer != "auto":
        return _optimize_once(model, start, optimizer, control, notes)
    gradient_method = "bfgs" if model.q_tail + model.p >= BFGS_MIN_TAIL else "l-bfgs-b"
    opt = _optimize_once(model, start, gradient_method, control, notes)
    if opt.converged and not np.any(opt.theta[model.lower == 0] < control.singular_tol):
        opt.optimizer = f"auto:{gradient_method}"
        return opt
    # a boundary (or failed) result of the gradient method: confirm it with COBYQA from the
    # start; for many parameters, where a derivative-free run costs thousands of evaluations,
    # by the gradient method again from its optimum nudged off the bounds
    if opt.converged and model.theta.size > COBYQA_FROM_START_MAX:
        nudged = np.where((model.lower == 0) & (opt.theta < 1e-2), 1e-2, opt.theta)
        other = _optimize_once(model, nudged, gradient_method, control, notes)
    else:
        other = _optimize_once(model, start, "cobyqa", control, notes)
    best = other if (other.converged and other.fmin < opt.fmin) or not opt.converged else opt
    model(best.theta)
    best.optimizer = f"auto:{other.optimizer if best is other else gradient_method}"
    best.n_evals = opt.n_evals + other.n_evals
    return best


def optimize_lmer(model: LmmModel, start=None, optimizer: str = "auto", method: str = "optimizer",
                  control=None) -> OptSummary:
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
    with blas_threads_for_fit(dense_tail_order(model.sizes, model.p), control.blas_threads):
        opt = on_internal_scale(model, lambda m, s: _optimize_lmer(m, s, optimizer, method, control), start)
        opt.blas_threads = current_blas_threads()
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
        notes.append(f"started from {em.n_evals} EM steps")
    opt = _optimize(model, start, optimizer, control, notes)
    _check(model, opt, control)
    if _failed(opt) and control.fallback_em:
        reason = opt.messages[0] if opt.messages and opt.converged else opt.message
        em = fit_em(model, theta0=start)
        again = _optimize(model, em.theta, optimizer, control, notes)
        best = again if (again.converged and again.fmin <= em.fmin) else em
        model(best.theta)
        _check(model, best, control)
        best.n_evals += opt.n_evals + (em.n_evals if best is again else 0)
        notes.append(f"the optimizer ({opt.optimizer}) failed ({reason}); refitted by EM "
                     f"({em.n_evals} steps), then " + ("the optimizer from EM's estimate" if best is again
                                                      else "kept EM's estimate"))
        opt = best
    opt.notes = notes + opt.notes
    return opt


def mk_lmer_fit(model: LmmModel, opt, data_name: str = "data") -> LmerFit:
    return LmerFit(model, opt, data_name=data_name, optimize=optimize_lmer)  # refit fits as lmer does


def lmer(formula: str, data, REML: bool = True, *, weights=None, offset=None, factors=(), start=None,
         method: str = "optimizer", optimizer: str = "auto", control=None,
         data_name: str = "data", env=None) -> LmerFit:
    """Fit a linear mixed model given by an lme4 formula, e.g.
    ``lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)``.

    Parameters
    ----------
    formula : lme4 model formula: fixed terms as in R (formulaic syntax also works) and
        random-effects terms ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)``.
        The response and the variables are R expressions, evaluated as R does
        (``log(y) - 1 ~ I(x > 4) + poly(x, 2) + offset(o)``; the R functions lmmpy knows are
        listed in :mod:`lmmpy.formula.rlang`).
    data : pandas DataFrame (not modified); rows with missing values in the model's
        variables are dropped and counted.
    REML : REML (default) or maximum likelihood.
    weights : prior weights (a column name or one value per row): the residual variance of
        row i is sigma^2 / w_i, as in lme4.
    offset : a column name or one value per row, added to the linear predictor.
    factors : columns to treat as categorical even if numeric.
    start : starting theta (default: lme4's, 1 on the diagonals and 0 elsewhere), or "em"
        to start the optimizer from a few EM steps.
    method : "optimizer" (default) or "em" (the EM algorithm alone, ML or REML as ``REML``).
    optimizer : "auto" (default: L-BFGS-B, or projected BFGS for a wide dense tail block,
        confirmed by COBYQA on boundary results), "cobyqa", "l-bfgs-b", "bfgs", "nelder-mead"
        or "powell"; None evaluates the model at ``start`` without optimising.
    control : :class:`lmmpy.LmerControl` or a dict of its fields: convergence checks and
        their tolerances, restart_edge, the EM fallback, options for the optimizer, the
        BLAS threads (``blas_threads``: None for lmmpy's rule, 1 thread unless the model is
        large and cores are idle; an int; or "inherit").
    data_name : how the summary names the data.
    env : the formula's environment: a mapping in which names that are not columns of
        ``data`` are looked up, as an R formula sees the variables of the code that made it.
        Default: the variables of the code calling lmer (its locals, then its globals).
    """
    REML = require_bool("REML", REML)  # before the data are read: REML="no" would fit REML
    env = caller_env(1) if env is None else check_env(env)
    control = LmerControl.coerce(control)
    # the BLAS threads: one for building the design (its calls are small), then sized to the
    # model (lmmpy.linalg.threads) once for the set-up, the fit and its results
    with blas_threads_for_fit(0, control.blas_threads):
        design = lformula(formula, data, factors=factors, weights=weights, offset=offset, env=env)
    sizes = [(t.nlevels, t.k) for t in design.reterms]
    with blas_threads_for_fit(dense_tail_order(sizes, design.p), control.blas_threads):
        model = mk_lmer_devfun(design, REML=REML)
        opt = optimize_lmer(model, start=start, optimizer=optimizer, method=method, control=control)
        fit = mk_lmer_fit(model, opt, data_name=data_name)
    fit._warn()
    return fit
