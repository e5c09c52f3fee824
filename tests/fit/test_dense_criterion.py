"""The dense route of small models (lmmpy/fit/dense_criterion.py) against the blocked factor:
the same criterion and gradient on every small reference model, ML and REML, scalar and
vector-valued terms, at lme4's optimum, off it and on the boundary; the response's replacement
(set_response) seen by it; the ill-conditioned X left to the blocked route."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.fit.dense_criterion import DENSE_MAX_ORDER, dense_order

from conftest import MODEL_IDS, SLOW, model_data, reference, spec


def model_of(mid, reml):
    s = spec(mid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(s["formula"], model_data(mid), REML=reml, start=reference(mid)["theta"], optimizer=None)
    return fit.model


CANDIDATES = [m for m in MODEL_IDS if m not in SLOW]  # InstEval's tail alone is 1,000 wide
SMALL = [m for m in CANDIDATES if dense_order(model_of(m, True).sizes, model_of(m, True).p) <= DENSE_MAX_ORDER]


def test_the_small_reference_models_take_the_dense_route():
    assert {"sleepstudy_slopes_reml", "penicillin_crossed_reml", "pastes_nested_reml"} <= set(SMALL)
    big = [m for m in CANDIDATES if m not in SMALL]
    assert big and all(model_of(m, True).dense is None for m in big)


@pytest.mark.parametrize("mid", SMALL)
@pytest.mark.parametrize("reml", [True, False])
def test_dense_criterion_and_gradient_equal_the_blocked_ones(mid, reml):
    model = model_of(mid, reml)
    dense = model.dense
    assert dense is not None
    theta0 = np.asarray(reference(mid)["theta"], dtype=float)
    rng = np.random.default_rng(7)
    points = [theta0, theta0 * 1.3 + 0.05, np.where(model.lower == 0, 0.0, theta0)]  # the last on the bound
    points.append(np.where(model.lower == 0, np.abs(rng.normal(size=theta0.size)) + 0.1, rng.normal(size=theta0.size)))
    for theta in points:
        f_blocked = model(theta)
        g_blocked = model.gradient()
        f_dense, g_dense = dense.value_and_gradient(theta)
        assert f_dense == pytest.approx(f_blocked, rel=1e-11)
        assert dense(theta) == f_dense
        scale = max(1.0, np.max(np.abs(g_blocked)))
        assert np.max(np.abs(g_dense - g_blocked)) <= 1e-7 * scale


def test_a_new_response_is_seen_by_the_dense_route():
    model = model_of("sleepstudy_slopes_reml", True)
    theta = np.array([0.9, 0.02, 0.2])
    before = model.dense(theta)
    y = np.random.default_rng(3).normal(250, 40, model.n)
    model.set_response(y)
    assert model.dense(theta) != before
    assert model.dense(theta) == pytest.approx(model(theta), rel=1e-11)


def test_an_ill_conditioned_x_is_left_to_the_blocked_route():
    # seconds since 1970 beside an intercept: ~10 digits of R_X cancel
    sleep = lmmpy.datasets.load("sleepstudy")
    d = sleep.assign(stamp=pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(sleep["Days"] * 3600, unit="s"))
    d = d.assign(stamp=(d["stamp"] - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1) / 2**31)
    model = lmmpy.mk_lmer_devfun(lmmpy.lformula("Reaction ~ stamp + (1 | Subject)", d))
    assert model.dense is None
    assert model_of("sleepstudy_intercept_reml", True).dense is not None


def test_non_finite_theta_gives_an_infinite_criterion():
    dense = model_of("sleepstudy_slopes_reml", True).dense
    assert dense(np.array([np.nan, 0.0, 1.0])) == np.inf
    f, g = dense.value_and_gradient(np.array([1.0, np.inf, 1.0]))
    assert f == np.inf and np.all(g == 0)


def test_the_last_evaluation_is_kept_and_forgotten_with_the_response():
    """The checks ask again at the optimizer's last point: the kept (value, gradient) are those
    of a fresh evaluation, a copy the caller may change; a new response forgets them."""
    model = model_of("sleepstudy_slopes_reml", True)
    dense = model.dense
    theta = np.array([0.9, 0.02, 0.25])
    f1, g1 = dense.value_and_gradient(theta)
    n = model.n_evals
    f2, g2 = dense.value_and_gradient(theta.copy())
    assert model.n_evals == n and f2 == f1 and np.array_equal(g2, g1) and g2 is not g1
    g2[:] = 0.0
    assert np.array_equal(dense.value_and_gradient(theta)[1], g1)
    y = model.design.y
    model.set_response(y + np.sin(np.arange(y.size)))
    f3, _ = model.dense.value_and_gradient(theta)
    assert f3 != f1 and f3 == pytest.approx(model(theta), rel=1e-10)
