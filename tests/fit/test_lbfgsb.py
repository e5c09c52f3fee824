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


def test_a_line_search_failing_at_the_rounding_level_is_convergence():
    """A criterion quantised at 1e-6 (its rounding) whose gradient does not vanish at its
    minimum at 1 (1e-3 of bias, as an analytic gradient beside a rounded criterion):
    L-BFGS-B's line search fails there (ABNORMAL); a fresh run gains nothing, so the point is
    taken as converged, with the reason said."""
    from lmmpy.fit.optimize import at_rounding_level

    def fg(x):
        return float(np.round(np.sum((x - 1.0) ** 2) + 1.0, 6)), 2.0 * (x - 1.0) + 1e-3 * np.sign(x - 1.0)

    opts = {"ftol": 1e-12, "gtol": 1e-7, "maxiter": 1000}
    first = minimize_lbfgsb(fg, np.array([3.0, -2.0]), np.full(2, -np.inf), **opts)
    assert not first.success and first.message.startswith("ABNORMAL")
    res = at_rounding_level(fg, first, np.full(2, -np.inf), opts)
    assert res.success and "rounding level" in res.message and np.allclose(res.x, 1.0, atol=1e-3)
    assert res.nfev > first.nfev


def test_the_sb_slope_models_reml_fit_stays_with_l_bfgs_b():
    """The Snijders & Bosker slope model (REML) from its moment start ends L-BFGS-B's line
    search at the criterion's rounding (max|g| 3e-4 at 24870.5387): converged, no COBYQA
    confirmation (which took 60 more evaluations), the criterion at most that of the fit from
    lme4's start."""
    d = lmmpy.datasets.load("mlbook2")
    formula = "langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)"
    fit = lmmpy.lmer(formula, d)
    assert fit.optsum.optimizer == "auto:l-bfgs-b" and fit.optsum.status.name == "CONVERGED"
    assert fit.objective <= lmmpy.lmer(formula, d, start=[1.0, 0.0, 1.0]).objective + 1e-8
