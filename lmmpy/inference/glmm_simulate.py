r"""Responses simulated from a fitted generalized linear mixed model, and the model refitted to
another response, as lme4's ``simulate.merMod`` and ``refit`` do for a glmer fit.

A simulation draws new spherical random effects u* ~ N(0, I) per level, b* = Lambda_theta u*
(lme4 does not scale them by sigma for a glmer fit), eta* = offset + X beta + Z b*,
mu* = g^{-1}(eta*), and then a response from the family at mu* with lme4's simulation
functions (w the prior weights, for a ``cbind()`` response times the trials):

- binomial: k ~ Binomial(w, mu*) (w must be whole numbers), returned as R returns it: the
  two columns k, w - k of a ``cbind(successes, failures)`` response; the factor's first or
  second level for a factor (or string) response; the proportion k / w otherwise;
- Poisson: Poisson(mu*) (prior weights are ignored, with lme4's warning);
- Gamma: shape a = w / sigma^2 and rate a / mu*, so that the variance is sigma^2 mu*^2 / w, the
  fitted model's (lme4 since its issue 782; lme4 1.1-31 took a = sigma w, whose draws have
  variance mu*^2 / (sigma w));
- inverse Gaussian: mean mu* and shape w / sigma^2, variance sigma^2 mu*^3 / w, the model's
  (lme4 1.1-31 takes w / sigma, as it took sigma for the Gamma shape).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, LmmError, require_bool, require_count
from ..fit.glmm_driver import GlmerControl, optimize_glmer
from ..fit.optimize import OptSummary
from ..fit.pirls import GlmmModel
from ..formula.parser import Call, Name, deparse
from .bootstrap import map_refits
from .parameters import parameter_values, ran_par_names
from .simulate import make_rng


@dataclasses.dataclass(frozen=True)
class ResponseKind:
    """How the fit's response was given: ``"cbind"`` (with its two columns' names),
    ``"factor"`` (with its levels; the first is failure) or ``"numeric"``."""

    kind: str
    names: tuple = ()


def response_kind(design) -> ResponseKind:
    resp = design.formula.response
    if isinstance(resp, Call) and resp.op == "cbind" and design.trials is not None:
        return ResponseKind("cbind", tuple(deparse(a) for a in resp.args))
    if isinstance(resp, Name) and resp.id in design.frame.columns:
        col = design.frame[resp.id]
        if isinstance(col.dtype, pd.CategoricalDtype):
            return ResponseKind("factor", tuple(col.cat.categories))
        if pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col):
            return ResponseKind("factor", tuple(sorted(col.unique())))
    return ResponseKind("numeric")


def _conditional_means(fit, rng) -> np.ndarray:
    """mu* at new random effects drawn from the fitted covariance (module docstring)."""
    model = fit.model
    u = rng.normal(size=model.q)
    eta = model.offset + model.X @ fit.beta + model.zlambda_u(u, fit.templates)
    return fit.family.linkinv(eta)


def simulate_glmm(fit, nsim: int = 1, seed=None) -> pd.DataFrame:
    """``nsim`` responses drawn from the fitted model (module docstring): columns ``sim_1, ...``;
    for a ``cbind()`` response two columns per simulation, (sim_i, successes' name) and
    (sim_i, failures' name); for a factor response categorical columns with the response's
    levels."""
    nsim = require_count("nsim", nsim)
    rng = make_rng(seed)
    model, family = fit.model, fit.family.family
    wt = model.wt
    kind = response_kind(fit.design)
    if family == "binomial" and np.any(wt % 1 != 0):
        raise LmmError("cannot simulate from non-integer prior weights (lme4's binomial simulation)")
    if family == "poisson" and np.any(model.prior_weights != 1):
        warnings.warn("ignoring prior weights", UserWarning, stacklevel=3)
    if family not in ("binomial", "poisson", "Gamma", "inverse.gaussian"):
        raise LmmError(f"simulation is not implemented for the {family} family")
    columns: dict = {}
    for s in range(nsim):
        mu = _conditional_means(fit, rng)
        name = f"sim_{s + 1}"
        if family == "binomial":
            k = rng.binomial(wt.astype(np.int64), mu).astype(float)
            if kind.kind == "cbind":
                columns[(name, kind.names[0])] = k
                columns[(name, kind.names[1])] = wt - k
            elif kind.kind == "factor":
                levels = list(kind.names)
                columns[name] = pd.Categorical.from_codes(k.astype(int), categories=levels[:2]).set_categories(levels)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    columns[name] = k / wt
        elif family == "poisson":
            columns[name] = rng.poisson(mu).astype(float)
        elif family == "Gamma":
            shape = wt / fit.sigma**2
            columns[name] = rng.gamma(shape, mu / shape)
        else:
            columns[name] = rng.wald(mu, wt / fit.sigma**2)
    out = pd.DataFrame(columns, index=fit.design.row_index)
    if kind.kind == "cbind":
        out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def new_glmm_response(fit, new_response: Any) -> tuple:
    """(y, trials) of the design for ``new_response``: for a ``cbind()`` fit two columns
    (successes, failures; a frame, an n x 2 array) or proportions of the fit's trials; for a
    factor fit values among its levels (or 0/1, booleans); else numbers; one per row of the fit."""
    n = fit.design.n
    kind = response_kind(fit.design)
    trials = fit.design.trials
    if isinstance(new_response, pd.DataFrame):
        if new_response.shape[1] == 1:
            new_response = new_response.iloc[:, 0]
        else:
            new_response = new_response.to_numpy()
    if isinstance(new_response, (str, bytes, dict, set)) or np.isscalar(new_response) or new_response is None:
        raise LmmError(f"new_response must be an array, a Series or a DataFrame, not {type(new_response).__name__}")
    categorical = isinstance(new_response, (pd.Series, pd.Categorical)) and (
        isinstance(new_response.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(new_response.dtype)
        or pd.api.types.is_string_dtype(new_response.dtype)
    )
    values = np.asarray(new_response, dtype=object if categorical else None)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape[0] != n:
        raise DataError(f"new_response has {values.shape[0]} rows; the fit used {n}")
    if values.ndim == 2:
        if values.shape[1] != 2 or kind.kind != "cbind":
            raise DataError(
                "a two-column new_response (successes, failures) is for a fit with a cbind() response; "
                f"this one has {values.shape[1]} columns and the fit's response is {kind.kind}"
            )
        pair = _numeric(values, "new_response")
        if np.any(pair < 0):
            raise DataError("new_response: counts must be non-negative")
        total = pair.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, pair[:, 0] / np.where(total > 0, total, 1.0), 0.0), total
    if values.dtype == object or values.dtype.kind in "US":
        if kind.kind != "factor":
            raise DataError(f"new_response has non-numeric values; the fit's response is {kind.kind}")
        unknown = set(values) - set(kind.names)
        if unknown:
            raise DataError(f"new_response has values {sorted(map(str, unknown))} that are not levels of the response")
        return (values != kind.names[0]).astype(float), trials
    y = _numeric(values, "new_response")
    if kind.kind == "cbind" and np.any((y < 0) | (y > 1)):
        raise DataError(
            "a one-column new_response of a cbind() fit is the proportion of successes (0 to 1) of the "
            "fit's trials; give counts as two columns (successes, failures)"
        )
    return y, trials


def _numeric(values: np.ndarray, what: str) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numeric") from None
    if not np.all(np.isfinite(out)):
        raise DataError(f"{what} has NaN or infinite values")
    return out


def refit_glmm(fit, new_response: Any, control: GlmerControl | None = None) -> tuple[GlmmModel, OptSummary]:
    """The fit's model with ``new_response`` (see :func:`new_glmm_response`), fitted with the
    same family, nAGQ, control and starting theta: (model, optimizer record)."""
    y, trials = new_glmm_response(fit, new_response)
    control = GlmerControl.coerce(control)
    design = dataclasses.replace(fit.design, y=y, trials=trials)
    model = GlmmModel(
        design, fit.family, nAGQ=fit.nAGQ, pirls_tol=control.pirls_tol, pirls_max_iter=control.pirls_max_iter
    )
    return model, optimize_glmer(model, start=fit.optsum.theta0, control=control)


def glmm_parameter_names(fit, old_names: bool = False) -> list:
    """lme4's names of a glmer fit's parameters: sd and cor per term, sigma for a family with
    a dispersion, the fixed effects."""
    ran = ran_par_names(fit, old_names=old_names)
    return (ran if fit.family.has_dispersion else ran[:-1]) + list(fit.design.xnames)


def glmm_parameter_values(fit) -> np.ndarray:
    values = parameter_values(fit)
    if fit.family.has_dispersion:
        return values
    return np.delete(values, fit.theta.size)  # sigma is 1


def bootstrap_glmm(fit, nsim: int = 500, seed=None, n_jobs: int = 1, progress=None) -> pd.DataFrame:
    """Parametric bootstrap of a glmer fit: ``nsim`` responses from :func:`simulate_glmm`, each
    refitted by ``fit.refit`` (the convergence checks and the final Hessian left out: their
    findings are not reported); one row of :func:`glmm_parameter_names` per simulation, NaN
    where a refit fails."""
    nsim, n_jobs = require_count("nsim", nsim), require_count("n_jobs", n_jobs)
    progress = None if progress is None else require_bool("progress", progress)
    sims = simulate_glmm(fit, nsim, seed)
    if isinstance(sims.columns, pd.MultiIndex):  # cbind: (successes, failures) per simulation
        responses = np.stack([sims[c].to_numpy() for c in sims.columns.get_level_values(0).unique()])
    else:
        responses = np.stack(
            [
                np.asarray(
                    sims[c].cat.codes if isinstance(sims[c].dtype, pd.CategoricalDtype) else sims[c], dtype=float
                )
                for c in sims.columns
            ]
        )
    control = dataclasses.replace(fit.control, check_conv=False, calc_derivs=False)
    size = len(glmm_parameter_names(fit))

    def per_response(y):
        try:
            return glmm_parameter_values(fit.refit(y, control=control))
        except Exception:  # noqa: BLE001 - a failed refit is dropped, and counted
            return np.full(size, np.nan)

    rows = map_refits(per_response, responses, fit, n_jobs=n_jobs, progress=progress)
    return pd.DataFrame(rows, columns=glmm_parameter_names(fit))
