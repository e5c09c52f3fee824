"""``lmer()``: lme4's modular chain, each step usable on its own.

    lformula(formula, data)         -> Design        (formula -> y, X, random-effects terms)
    mk_lmer_devfun(design, REML)    -> LmmModel      (theta -> profiled criterion)
    optimize_lmer(model)            -> OptSummary    (the optimum, and what the optimizer did)
    mk_lmer_fit(model, opt)         -> LmerFit       (estimates, summary, ...)
"""
from __future__ import annotations

from .fit.deviance import LmmModel
from .fit.optimize import evaluate_at, optimize_lmm
from .formula.design import Design, build_design
from .results.model import LmerFit


def lformula(formula, data, factors=(), weights=None, offset=None) -> Design:
    """Parse an lme4 formula and build y, X and the random-effects terms from ``data``."""
    return build_design(formula, data, factors=factors, weights=weights, offset=offset)


def mk_lmer_devfun(design: Design, REML: bool = True) -> LmmModel:
    """The profiled criterion as a callable of theta (REML criterion or ML deviance)."""
    return LmmModel(design, REML=REML)


def optimize_lmer(model: LmmModel, start=None, optimizer: str = "cobyqa"):
    """Minimise the criterion from ``start``; ``optimizer=None`` only evaluates it there."""
    if optimizer is None:
        if start is None:
            raise ValueError("optimizer=None needs a start (the theta to evaluate the model at)")
        return evaluate_at(model, start)
    return optimize_lmm(model, theta0=start, optimizer=optimizer)


def mk_lmer_fit(model: LmmModel, opt, data_name: str = "data") -> LmerFit:
    return LmerFit(model, opt, data_name=data_name)


def lmer(formula: str, data, REML: bool = True, *, weights=None, offset=None, factors=(), start=None,
         optimizer: str = "cobyqa", data_name: str = "data") -> LmerFit:
    """Fit a linear mixed model given by an lme4 formula, e.g.
    ``lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)``.

    Parameters
    ----------
    formula : lme4 model formula: fixed terms as in R (formulaic syntax also works) and
        random-effects terms ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)``.
    data : pandas DataFrame (not modified); rows with missing values in the model's
        variables are dropped and counted.
    REML : REML (default) or maximum likelihood.
    weights : prior weights (a column name or one value per row): the residual variance of
        row i is sigma^2 / w_i, as in lme4.
    offset : a column name or one value per row, added to the linear predictor.
    factors : columns to treat as categorical even if numeric.
    start : starting theta (default: lme4's, 1 on the diagonals and 0 elsewhere).
    optimizer : "cobyqa" (default), "l-bfgs-b", "nelder-mead" or "powell"; None evaluates
        the model at ``start`` without optimising.
    data_name : how the summary names the data.
    """
    design = lformula(formula, data, factors=factors, weights=weights, offset=offset)
    model = mk_lmer_devfun(design, REML=REML)
    opt = optimize_lmer(model, start=start, optimizer=optimizer)
    fit = mk_lmer_fit(model, opt, data_name=data_name)
    fit._warn()
    return fit
