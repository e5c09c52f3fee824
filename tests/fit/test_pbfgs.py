"""Projected BFGS (lmmpy.fit.pbfgs): bound-constrained minima of known functions, and lme4's
optima when lmer uses it."""

import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.pbfgs import minimize_pbfgs

from conftest import MODEL_IDS, SLOW, model_data, reference, spec


def counted(f):
    calls = {"value": 0, "gradient": 0}

    def value(x):
        calls["value"] += 1
        return f(x)[0]

    def value_and_gradient(x):
        calls["gradient"] += 1
        return f(x)

    return value, value_and_gradient, calls


def test_quadratic_with_active_bounds_meets_the_kkt_conditions():
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    b = np.array([1.0, -2.0, 0.5])  # the unconstrained minimum has a negative coordinate
    f = lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b)  # noqa: E731
    value, both, calls = counted(f)
    res = minimize_pbfgs(value, both, np.ones(3), np.zeros(3), h0=np.full(3, 0.25), gtol=1e-10)
    g = A @ res.x - b
    assert res.success and res.x[1] == 0.0 and g[1] > 0  # held on its bound, pushing outward
    assert np.allclose(g[[0, 2]], 0.0, atol=1e-7)
    assert calls["gradient"] <= calls["value"] + 1  # gradients only at accepted points


def test_rosenbrock_without_bounds():
    def f(x):
        a, b = x
        return (
            100 * (b - a * a) ** 2 + (1 - a) ** 2,
            np.array([-400 * a * (b - a * a) - 2 * (1 - a), 200 * (b - a * a)]),
        )

    value, both, _ = counted(f)
    res = minimize_pbfgs(
        value, both, np.array([-1.2, 1.0]), np.full(2, -np.inf), h0=np.full(2, 1e-3), ftol=0.0, gtol=1e-8
    )
    assert res.success and np.allclose(res.x, [1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("mid", [m for m in MODEL_IDS if m not in SLOW])
def test_lmer_with_projected_bfgs_reaches_lme4s_optimum(mid):
    s, ref = spec(mid), reference(mid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(s["formula"], model_data(mid), REML=bool(s["REML"]), optimizer="bfgs")
    # boundary optima are confirmed by restart_edge, as with any optimizer; a lower criterion
    # than lme4's is a better optimum
    assert fit.objective <= ref["criterion"] + 1e-6 * max(1.0, abs(ref["criterion"])), (fit.objective, ref["criterion"])
