"""Responses simulated from a fitted model, and the model refitted to another response
(what the parametric bootstrap, profiles of REML fits and anova's ML refits use)."""

from __future__ import annotations

from typing import Any

import dataclasses

import numpy as np
import pandas as pd

from ..errors import DataError, LmmError, require_bool, require_count
from ..fit.deviance import LmmModel
from ..fit.driver import optimize_lmer
from ..fit.scaling import ColumnScaling
from .parameters import parameter_values, parameter_vector


def make_rng(seed) -> np.random.Generator:
    """numpy's Generator for ``seed`` (None, a non-negative integer or a Generator)."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise LmmError(f"seed must be None, a non-negative integer or a numpy Generator, not {seed!r} ({e})") from None


def simulate(fit, nsim: int = 1, seed=None) -> pd.DataFrame:
    """``nsim`` responses drawn from the fitted model: X beta + offset + Z b* + e*, with
    b* ~ N(0, Sigma) per level and e* ~ N(0, sigma^2 / w)."""
    nsim = require_count("nsim", nsim)  # lme4: nsim > 0
    rng = make_rng(seed)
    design = fit.design
    base = design.X @ fit.fixef.to_numpy() + (design.offset if design.offset is not None else 0.0)
    sd_e = fit.sigma / np.sqrt(design.weights) if design.weights is not None else fit.sigma
    out = np.empty((design.n, nsim))
    for s in range(nsim):
        y = base + rng.normal(size=design.n) * sd_e
        for t, T in zip(design.reterms, fit.templates):
            b = rng.normal(size=(t.nlevels, t.k)) @ (fit.sigma * T).T
            y = y + np.einsum("nk,nk->n", t.X, b[t.codes])
        out[:, s] = y
    return pd.DataFrame(out, index=design.row_index, columns=[f"sim_{s + 1}" for s in range(nsim)])


class ParameterRefitter:
    """``refitter(y)``: ``parameter_vector`` of the fit refitted to the response ``y``, NaN where
    the refit fails.  One model serves every call: its cross-products take each new response in
    turn (:meth:`LmmModel.set_response`: only the products with y are recomputed), so a refit
    costs the optimizer's evaluations and little else.  (A model fitted on rescaled columns is
    refitted through :func:`refit`, which rescales each new design.)"""

    def __init__(self, fit: Any, optimize: Any = None, **kwargs: Any):
        optimize = fit.optimize if optimize is None else optimize
        self.fit, self.kwargs = fit, kwargs
        self.optimize = optimize_lmer if optimize is None else optimize
        self.size = len(parameter_vector(fit))
        self.reuse = ColumnScaling.of(fit.design, centre=True) is None and fit.model.cross_products.rows is not None
        self._model: LmmModel | None = None  # made at the first refit (in the worker that runs it)

    def __call__(self, y: Any) -> np.ndarray:
        fit = self.fit
        try:
            if not self.reuse:
                return parameter_vector(refit(fit, y, self.optimize, **self.kwargs)).to_numpy()
            y = np.asarray(y, dtype=float).ravel()
            if y.size != fit.design.n or not np.all(np.isfinite(y)):
                raise DataError("a response must have one finite value per row of the fit")
            if self._model is None:
                own = fit.model.cross_products.with_own_response()
                self._model = LmmModel(fit.design, REML=fit.REML, cross_products=own)
            opt = self.optimize(self._model.set_response(y), start=fit.theta, **self.kwargs)
            return parameter_values(type(fit)(self._model, opt, data_name=fit.data_name))
        except Exception:  # noqa: BLE001 - a failed refit is dropped, and counted
            return np.full(self.size, np.nan)


def refit_parameters(fit: Any, responses: Any, optimize: Any = None, **kwargs: Any) -> list:
    """:class:`ParameterRefitter`'s vector for each response (the rows of ``responses``)."""
    refitter = ParameterRefitter(fit, optimize, **kwargs)
    return [refitter(y) for y in responses]


def refit(fit, new_response, optimize, **kwargs):
    """The same model fitted to another response (one value per row used in the fit).

    ``optimize(model, start=..., **kwargs) -> OptSummary`` fits the new model (default: the fit
    layer's ``optimize_lmer``, lmer's own); the result is a fit of ``fit``'s own class, made with
    the same ``optimize``."""
    optimize = optimize_lmer if optimize is None else optimize
    y = np.asarray(new_response, dtype=float).ravel()
    if y.size != fit.design.n:
        raise DataError(f"new_response has {y.size} values; the fit used {fit.design.n} rows")
    if not np.all(np.isfinite(y)):
        raise DataError("new_response has NaN or infinite values")
    design = dataclasses.replace(fit.design, y=y)
    # the fit's cross-products with the new response's products: Z, Z'Z and X'X are not rebuilt
    cp = fit.model.cross_products
    cp = cp.with_own_response().set_response(y) if cp.rows is not None else None
    model = LmmModel(design, REML=require_bool("REML", kwargs.pop("REML", fit.REML)), cross_products=cp)
    opt = optimize(model, start=kwargs.pop("start", fit.theta), **kwargs)
    return type(fit)(model, opt, data_name=fit.data_name, optimize=optimize)
