"""Convergence diagnostics as lme4 makes them, restart_edge, the EM fallback and start='em'."""

import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy import ConvergenceWarning, LmerControl, LmmError, SingularFitWarning
from lmmpy.fit.checks import _hessian_messages, deriv12, gradient_hessian, restart_point
from lmmpy.fit.gradient import value_and_gradient

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return lmmpy.datasets.load("sleepstudy")


def test_gradient_and_hessian_recorded_at_optimum(sleep):
    fit = lmmpy.lmer(FORMULA, sleep)
    g, H = fit.optsum.gradient, fit.optsum.hessian
    assert g.shape == (3,) and H.shape == (3, 3)
    assert np.max(np.abs(g)) < 1e-3
    assert np.all(np.linalg.eigvalsh(H) > 0)
    assert fit.optsum.messages == []


def test_deriv12_on_a_quadratic():
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    g, H = deriv12(lambda x: x @ A @ x + x[0], np.array([0.3, -0.2]))
    assert np.allclose(g, 2 * A @ [0.3, -0.2] + [1, 0], atol=1e-7)
    assert np.allclose(H, 2 * A, atol=1e-5)


def test_checks_derivatives_agree_with_deriv12(sleep):
    """The checks' gradient (analytic) and Hessian (its forward differences) against lme4's
    deriv12 of the criterion, at the optimum and away from it: the Hessians agree to 1e-4
    relative (deriv12's own rounding, ~1e-13 * 1.7e3 / 1e-8, is ~2e-2 absolute on entries of
    ~10-1000), the gradients to 1e-3 absolute (deriv12's truncation and rounding)."""
    fit = lmmpy.lmer(FORMULA, sleep)
    model = fit.model
    for theta in (fit.theta, np.array([0.5, 0.1, 0.3])):
        g, H = gradient_hessian(value_and_gradient(model), theta)
        g12, H12 = deriv12(model, theta)
        assert np.allclose(g, g12, rtol=1e-6, atol=1e-3)
        assert np.allclose(H, H12, rtol=1e-4, atol=1e-4 * np.abs(H12).max())
    assert np.array_equal(fit.optsum.gradient, gradient_hessian(value_and_gradient(model), fit.theta)[0])


def test_checks_derivatives_where_a_step_is_not_finite():
    """A step onto a non-finite criterion gives NaN (the checks report NAs), not zeros."""

    def fg(x):
        return (np.inf, np.zeros(2)) if x[1] > 0 else (float(x @ x), 2 * x)

    g, H = gradient_hessian(fg, np.array([0.3, 0.0]))
    assert np.allclose(g, [0.6, 0.0]) and np.isnan(H[1]).all() and np.isnan(H[:, 1]).all()
    g, H = gradient_hessian(fg, np.array([0.3, 1.0]))
    assert np.isnan(g).all()


def test_failed_gradient_check_warns_and_is_shown(sleep):
    with pytest.warns(ConvergenceWarning, match=r"Model failed to converge with max\|grad\| = \S+ \(tol = 0.002"):
        fit = lmmpy.lmer(FORMULA, sleep, start=[0.5, 0.0, 0.2], optimizer=None)
    assert "Model failed to converge with max|grad|" in str(fit.summary())


def test_checks_can_be_switched_off(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = lmmpy.lmer(FORMULA, sleep, start=[0.5, 0.0, 0.2], optimizer=None, control={"check_conv": False})
    assert fit.optsum.gradient is None and fit.optsum.messages == []


def test_tolerance_is_a_control(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lmmpy.lmer(FORMULA, sleep, start=[0.5, 0.0, 0.2], optimizer=None, control=LmerControl(grad_tol=1e6))


def test_unknown_control_setting(sleep):
    with pytest.raises(LmmError, match="unknown control setting"):
        lmmpy.lmer(FORMULA, sleep, control={"tolerance": 1})


def test_hessian_messages():
    assert _hessian_messages(np.diag([1.0, -1.0]), 1e-6) == [
        "Model failed to converge: degenerate  Hessian with 1 negative eigenvalue"
    ]
    assert "numerically singular" in _hessian_messages(np.diag([1.0, 0.0]), 1e-6)[0]
    assert "very large eigenvalue" in _hessian_messages(np.diag([1.0, 1e7]), 1e-6)[0]
    assert "large eigenvalue ratio" in _hessian_messages(np.diag([1e-5, 1e2]), 1e-6)[-1]
    assert _hessian_messages(np.eye(2), 1e-6) == []


def test_singular_fit_skips_derivative_checks():
    d = lmmpy.datasets.load("Dyestuff2")
    with pytest.warns(SingularFitWarning):
        fit = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", d)
    assert fit.optsum.messages == ["boundary (singular) fit: see help('isSingular')"]
    assert fit.optsum.gradient is None


def test_restart_edge_detects_a_wrong_boundary(sleep):
    fit = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    f0 = fit.model(np.array([0.0]))
    point = restart_point(fit.model, np.array([0.0]), f0)
    assert point[0] > 0 and fit.model(point) < f0
    d2 = lmmpy.datasets.load("Dyestuff2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sing = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", d2)
    assert restart_point(sing.model, sing.theta, sing.objective) is None


def test_restart_from_boundary_start_reaches_optimum(sleep):
    best = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    fit = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", sleep, start=[0.0], optimizer="l-bfgs-b")
    assert fit.objective == pytest.approx(best.objective, abs=1e-6)
    assert "restarted off a zero bound (restart_edge)" in fit.optsum.notes


def test_failed_optimizer_falls_back_to_em(sleep):
    best = lmmpy.lmer(FORMULA, sleep)
    with pytest.warns(ConvergenceWarning, match="refitted by EM"):
        fit = lmmpy.lmer(FORMULA, sleep, optimizer="cobyqa", control={"optimizer_options": {"maxfev": 4}})
    assert fit.objective == pytest.approx(best.objective, abs=1e-4)
    assert any("refitted by EM" in n for n in fit.optsum.notes)
    assert "refitted by EM" in str(fit.summary())


def test_no_fallback_when_switched_off(sleep):
    with pytest.warns(ConvergenceWarning) as caught:
        fit = lmmpy.lmer(
            FORMULA, sleep, optimizer="cobyqa", control={"optimizer_options": {"maxfev": 4}, "fallback_em": False}
        )
    assert any("did not converge" in str(w.message) for w in caught)
    assert not fit.optsum.converged


def test_start_em(sleep):
    best = lmmpy.lmer(FORMULA, sleep)
    fit = lmmpy.lmer(FORMULA, sleep, start="em")
    assert fit.objective == pytest.approx(best.objective, abs=1e-6)
    assert fit.optsum.notes and fit.optsum.notes[0].startswith("started from")
    assert fit.optsum.n_evals < best.optsum.n_evals + 10


def test_bad_method_and_start(sleep):
    with pytest.raises(LmmError, match="method must be"):
        lmmpy.lmer(FORMULA, sleep, method="newton")
    with pytest.raises(LmmError, match="start must be"):
        lmmpy.lmer(FORMULA, sleep, start="random")
    with pytest.raises(LmmError, match="unknown optimizer"):
        lmmpy.lmer(FORMULA, sleep, optimizer="bfgs2")


def test_restart_edge_sees_a_parameter_rounded_off_its_bound():
    """Projected BFGS can stop a hair off the bound (2e-18 where rounding went the other way:
    lmer with optimizer="bfgs" then stayed at 24777.88, lme4's optimum is 24768.85): a
    parameter within ON_BOUND of 0 is restarted as one at 0."""
    d = lmmpy.datasets.load("mlbook2")
    d["schoolnr"] = d["schoolnr"].astype(str).astype("category")
    model = lmmpy.mk_lmer_devfun(lmmpy.lformula("langPOST ~ IQ_verb * factor(sex) + (1 + IQ_verb || schoolnr)", d))
    for off in (0.0, 2.24e-18):
        theta = np.array([0.498552140, off])
        restart = restart_point(model, theta, model(theta))
        assert restart is not None and restart[1] > 0
