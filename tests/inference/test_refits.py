"""Refits with a new response reuse the fit's cross-products: ``refit_parameters`` (the
bootstrap's loop, one model for every response) gives what a fresh fit of each response gives,
on a small (dense route), a crossed and a rescaled model; a bad response is a NaN row."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.inference.parameters import parameter_vector
from lmmpy.inference.simulate import refit_parameters

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", 1e5),  # Days in units of 1e-5: rescaled
]


@pytest.mark.parametrize("dataset, formula, scale", CASES)
def test_refit_parameters_equal_fresh_fits(dataset, formula, scale):
    data = lmmpy.datasets.load(dataset)
    if scale:
        data = data.assign(Days=data["Days"] * scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(formula, data)
        ys = fit.simulate(4, seed=11).to_numpy().T
        rows = refit_parameters(fit, ys, control={"check_conv": False})
        for y, row in zip(ys, rows):
            fresh = lmmpy.lmer(formula, data.assign(**{fit.design.formula.response_text: y}))
            assert np.allclose(row, parameter_vector(fresh).to_numpy(), rtol=1e-5, atol=1e-6)
    # the fit itself is untouched by the refits
    assert np.allclose(parameter_vector(fit).to_numpy(), parameter_vector(lmmpy.lmer(formula, data)).to_numpy())


def test_a_bad_response_gives_a_nan_row():
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))
    y = fit.simulate(1, seed=1).to_numpy()[:, 0]
    rows = refit_parameters(fit, [y, np.full(fit.nobs, np.nan), y[:10]], control={"check_conv": False})
    assert np.all(np.isfinite(rows[0])) and np.all(np.isnan(rows[1])) and np.all(np.isnan(rows[2]))


def test_refit_reuses_the_cross_products_and_matches_a_fresh_model():
    data = lmmpy.datasets.load("sleepstudy")
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", data)
    y = fit.simulate(1, seed=5).to_numpy()[:, 0]
    again = fit.refit(y)
    assert again.model.cross_products.A11 is fit.model.cross_products.A11  # shared, not rebuilt
    fresh = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", data.assign(Reaction=y))
    assert again.objective == pytest.approx(fresh.objective, rel=1e-10)
    assert np.allclose(again.fixef, fresh.fixef, rtol=1e-7)
    assert isinstance(again.fixef, pd.Series)
