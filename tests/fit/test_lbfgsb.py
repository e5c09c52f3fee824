"""The direct L-BFGS-B loop (lmmpy/fit/lbfgsb.py) takes scipy minimize's iterates: the same
point, value, convergence and message on a bounded problem and on a model's criterion; other
options go to minimize itself."""

import numpy as np
import pytest
from scipy.optimize import Bounds, minimize

import lmmpy
from lmmpy.fit import lbfgsb
from lmmpy.fit.lbfgsb import minimize_lbfgsb


def rosen(x):
    f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
    g = np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])
    return f, g


def scipy_result(fg, x0, lower, **opts):
    bounds = Bounds(lower, np.full_like(lower, np.inf))
    return minimize(fg, x0, method="L-BFGS-B", jac=True, bounds=bounds, options=opts)


@pytest.mark.parametrize("lower", [np.array([-np.inf, -np.inf]), np.array([1.2, -np.inf])])
def test_same_iterates_as_minimize(lower):
    opts = {"ftol": 1e-12, "gtol": 1e-7, "maxiter": 1000}
    ours = minimize_lbfgsb(rosen, np.array([-1.2, 1.0]), lower, **opts)
    theirs = scipy_result(rosen, np.array([-1.2, 1.0]), lower, **opts)
    assert np.array_equal(ours.x, theirs.x)
    assert ours.fun == theirs.fun and ours.success == theirs.success and ours.message == theirs.message
    assert ours.nit == theirs.nit


def test_maxiter_stops_as_minimize_does():
    ours = minimize_lbfgsb(rosen, np.array([-1.2, 1.0]), np.full(2, -np.inf), maxiter=3)
    theirs = scipy_result(rosen, np.array([-1.2, 1.0]), np.full(2, -np.inf), maxiter=3)
    assert not ours.success and ours.message == theirs.message and np.array_equal(ours.x, theirs.x)


def test_a_models_criterion_same_optimum_as_minimize():
    model = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy")).model
    fg = model.dense.value_and_gradient
    opts = {"ftol": 1e-12, "gtol": 1e-7, "maxiter": 1000}
    ours = minimize_lbfgsb(fg, model.theta_start(), model.lower, **opts)
    theirs = scipy_result(fg, model.theta_start(), model.lower, **opts)
    assert np.array_equal(ours.x, theirs.x) and ours.success


def test_other_options_and_other_scipys_use_minimize(monkeypatch):
    calls = []
    real = lbfgsb.minimize

    def counted(*args, **kwargs):
        calls.append(kwargs["options"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lbfgsb, "minimize", counted)
    res = minimize_lbfgsb(rosen, np.array([-1.2, 1.0]), np.full(2, -np.inf), maxcor=5)
    assert calls and calls[-1]["maxcor"] == 5 and res.success
    monkeypatch.setattr(lbfgsb, "_direct_works", False)
    minimize_lbfgsb(rosen, np.array([-1.2, 1.0]), np.full(2, -np.inf))
    assert len(calls) == 2
