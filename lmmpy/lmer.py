"""``lmer()``: lme4's modular chain, each step usable on its own.

lformula(formula, data)         -> Design        (formula -> y, X, random-effects terms)
mk_lmer_devfun(design, REML)    -> LmmModel      (theta -> profiled criterion)
optimize_lmer(model)            -> OptSummary    (the optimum, and what the optimizer did;
                                                  the policy lives in lmmpy.fit.driver)
mk_lmer_fit(model, opt)         -> LmerFit       (estimates, summary, ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .errors import require_bool
from .fit.checks import LmerControl
from .fit.deviance import LmmModel
from .fit.optimize import OptSummary
from .fit.driver import _check, optimize_lmer  # noqa: F401 (the chain's third step; _check for tests)
from .formula.design import Design, build_design, caller_env, check_env
from .linalg.threads import blas_threads_for_fit, dense_tail_order
from .daskfit import DaskLmerFit
from .fit.partitions import is_dask_frame, partitioned_model
from .lmerfit import LmerFit


def lformula(
    formula: str,
    data: pd.DataFrame,
    factors: Sequence[str] = (),
    weights: Any = None,
    offset: Any = None,
    env: Mapping | None = None,
) -> Design:
    """Parse an lme4 formula and build y, X and the random-effects terms from ``data``.
    ``env``: the formula's environment (default: the caller's variables; see :func:`lmer`)."""
    env = caller_env(1) if env is None else check_env(env)
    return build_design(formula, data, factors=factors, weights=weights, offset=offset, env=env)


def mk_lmer_devfun(design: Design, REML: bool = True) -> LmmModel:
    """The profiled criterion as a callable of theta (REML criterion or ML deviance)."""
    return LmmModel(design, REML=require_bool("REML", REML))


def mk_lmer_fit(model: LmmModel, opt: OptSummary, data_name: str = "data") -> LmerFit:
    return LmerFit(model, opt, data_name=data_name, optimize=optimize_lmer)  # refit fits as lmer does


def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = True,
    *,
    weights: Any = None,
    offset: Any = None,
    factors: Sequence[str] = (),
    start: Any = None,
    method: str = "optimizer",
    optimizer: str = "auto",
    control: LmerControl | dict | None = None,
    data_name: str = "data",
    env: Mapping | None = None,
) -> LmerFit:
    """Fit a linear mixed model given by an lme4 formula, e.g.
    ``lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)``.

    Parameters
    ----------
    formula : lme4 model formula: fixed terms as in R (formulaic syntax also works) and
        random-effects terms ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)``.
        The response and the variables are R expressions, evaluated as R does
        (``log(y) - 1 ~ I(x > 4) + poly(x, 2) + offset(o)``; the R functions lmmpy knows are
        listed in :mod:`lmmpy.formula.rlang`).
    data : pandas DataFrame (not modified), or a polars DataFrame or pyarrow Table (converted
        to pandas once, :mod:`lmmpy.formula.frames`); rows with missing values in the model's
        variables are dropped and counted.  Or a Dask DataFrame, for data larger than memory:
        each partition is reduced to the model's cross-products where it is, on the active
        Dask scheduler (``weights`` and ``offset`` then name columns); the fit is a
        :class:`lmmpy.daskfit.DaskLmerFit`.
    REML : REML (default) or maximum likelihood.
    weights : prior weights (a column name or one value per row): the residual variance of
        row i is sigma^2 / w_i, as in lme4.
    offset : a column name or one value per row, added to the linear predictor.
    factors : columns to treat as categorical even if numeric.
    start : starting theta (default: lme4's, 1 on the diagonals and 0 elsewhere, with each
        diagonal entry in units of its column's root mean square: 1 / rms(x) for a slope on x,
        the same start whatever x's units), or "em" to start the optimizer from a few EM steps.
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
    if is_dask_frame(data):  # the partitions reduced to the cross-products where they are
        with blas_threads_for_fit(0, control.blas_threads):
            model = partitioned_model(data, formula, REML, weights=weights, offset=offset, factors=factors, env=env)
        with blas_threads_for_fit(dense_tail_order(model.sizes, model.p), control.blas_threads):
            opt = optimize_lmer(model, start=start, optimizer=optimizer, method=method, control=control)
            dask_fit = DaskLmerFit(model, opt, data, data_name=data_name, optimize=optimize_lmer)
        dask_fit._warn()
        return dask_fit
    with blas_threads_for_fit(0, control.blas_threads):
        design = lformula(formula, data, factors=factors, weights=weights, offset=offset, env=env)
    sizes = [(t.nlevels, t.k) for t in design.reterms]
    with blas_threads_for_fit(dense_tail_order(sizes, design.p), control.blas_threads):
        model = mk_lmer_devfun(design, REML=REML)
        opt = optimize_lmer(model, start=start, optimizer=optimizer, method=method, control=control)
        fit = mk_lmer_fit(model, opt, data_name=data_name)
    fit._warn()
    return fit
