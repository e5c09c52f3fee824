"""``glmer()``: generalized linear mixed models, lme4's chain for glmer.

glformula(formula, data, ...)     -> Design     (the response as R's families take it)
mk_glmer_devfun(design, family)   -> GlmmModel  ((theta, beta) -> Laplace / AGQ deviance)
optimize_glmer(model)             -> OptSummary (lme4's nAGQ = 0 stage, then (theta, beta))
mk_glmer_fit(model, opt)          -> GlmerFit
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import LmmError
from .families import Family, as_family
from .fit.glmm_driver import GlmerControl, optimize_glmer
from .fit.pirls import GlmmModel
from .formula.design import Design, build_design, caller_env, check_env
from .glmerfit import GlmerFit


def glformula(formula, data, factors=(), weights=None, offset=None, env=None) -> Design:
    """Parse an lme4 formula and build y, X and the random-effects terms, the response as a
    glm family takes it (0/1, booleans, a factor, ``cbind(successes, failures)``, a proportion)."""
    env = caller_env(1) if env is None else check_env(env)
    return build_design(formula, data, factors=factors, weights=weights, offset=offset, env=env, glm_response=True)


def _nagq(nAGQ) -> int:
    if isinstance(nAGQ, bool) or not isinstance(nAGQ, (int, np.integer, float)) or nAGQ != int(nAGQ) or nAGQ < 0:
        raise LmmError(f"nAGQ must be a whole number >= 0, not {nAGQ!r}")
    return int(nAGQ)


def mk_glmer_devfun(design: Design, family="binomial", nAGQ: int = 1, control=None) -> GlmmModel:
    """The deviance of the generalized model as a function of (theta, beta)."""
    control = GlmerControl.coerce(control)
    fam = as_family(family)
    model = GlmmModel(design, fam, nAGQ=_nagq(nAGQ), pirls_tol=control.pirls_tol, pirls_max_iter=control.pirls_max_iter)
    if fam.family == "binomial":
        counts = model.y * model.wt
        if np.any(np.abs(counts - np.round(counts)) > 1e-3):
            warnings.warn("non-integer #successes in a binomial glm!", UserWarning, stacklevel=3)
    return model


def mk_glmer_fit(model: GlmmModel, opt, data_name: str = "data", control=None) -> GlmerFit:
    return GlmerFit(model, opt, data_name=data_name, control=control)


def glmer(
    formula: str,
    data,
    family="binomial",
    nAGQ: int = 1,
    *,
    weights=None,
    offset=None,
    factors=(),
    start=None,
    control=None,
    data_name: str = "data",
    env=None,
) -> GlmerFit:
    """Fit a generalized linear mixed model given by an lme4 formula, e.g.
    ``glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")``.

    Parameters
    ----------
    formula : lme4 model formula (as for :func:`lmmpy.lmer`); a binomial response may be 0/1,
        booleans, a two-level factor or string column (the first level is failure),
        ``cbind(successes, failures)``, or a proportion with ``weights=`` the trials.
    data : pandas DataFrame (not modified).
    family : "binomial", "poisson", "Gamma", "inverse.gaussian" or an object of
        :mod:`lmmpy.families` (``binomial(link="probit")``...).
    nAGQ : 1 (Laplace, the default), 0 (beta estimated inside PIRLS, faster and less exact) or
        > 1 (adaptive Gauss-Hermite quadrature, for a single scalar random-effects term).
    weights : prior weights (binomial: the trials of a proportion response).
    offset : added to the linear predictor.
    factors : columns to treat as categorical even if numeric.
    start : starting theta (default lme4's).
    control : :class:`lmmpy.fit.glmm_driver.GlmerControl` or a dict of its fields.
    data_name : how the summary names the data.
    env : the formula's environment (see :func:`lmmpy.lmer`).
    """
    env = caller_env(1) if env is None else check_env(env)
    if isinstance(family, str) and family.lower() == "gaussian":
        raise LmmError("family='gaussian' is a linear mixed model: fit it with lmmpy.lmer")
    fam = family if isinstance(family, Family) else as_family(family)
    nagq = _nagq(nAGQ)
    control = GlmerControl.coerce(control)
    design = glformula(formula, data, factors=factors, weights=weights, offset=offset, env=env)
    model = mk_glmer_devfun(design, fam, nAGQ=nagq, control=control)
    opt = optimize_glmer(model, start=start, control=control)
    fit = mk_glmer_fit(model, opt, data_name=data_name, control=control)
    fit._warn()
    return fit
