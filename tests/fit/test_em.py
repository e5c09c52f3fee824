"""The EM algorithm: the same optimum as the optimizer on every reference model (ML and REML),
a criterion that never rises, and M-step formulas checked against a direct dense computation."""

import functools
import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy.linalg import gram
from lmmpy.fit.deviance import theta_templates
from lmmpy.fit.em import em_step, fit_em

from conftest import MODEL_IDS, SLOW, model_data, spec

# both routes of the Schur complement's weighted Gram (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("pair_route")

SHARED = [
    m
    for m in MODEL_IDS
    if not m.startswith(("sleep_", "pastes_explicit", "pastes_cat", "mlbook2_poly", "mlbook2_factor"))
]


def both(mid, reml):
    """The optimizer's fit and EM's, on the weighted Gram's route in force (cached per route)."""
    return _both(mid, reml, gram.PAIR_BUDGET)


@functools.lru_cache(maxsize=None)
def _both(mid, reml, budget):
    s = spec(mid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = lmmpy.lmer(s["formula"], model_data(mid), REML=reml)
        em = lmmpy.lmer(s["formula"], model_data(mid), REML=reml, method="em")
    return opt, em


def params():
    return [pytest.param(m, r, marks=[pytest.mark.slow] if m in SLOW else []) for m in SHARED for r in (True, False)]


@pytest.mark.parametrize("mid, reml", params())
def test_em_reaches_the_optimizers_criterion(mid, reml):
    opt, em = both(mid, reml)
    assert em.optsum.optimizer.startswith("em")
    assert em.optsum.converged
    assert em.objective <= opt.objective + 1e-3
    assert em.objective >= opt.objective - 1e-3  # not better by more than the tolerance either


@pytest.mark.parametrize("mid", ["sleepstudy_slopes_reml", "pastes_nested_reml", "mlbook2_interactions_reml"])
def test_em_criterion_never_rises(mid):
    _, em = both(mid, True)
    trace = np.array(em.optsum.trace)
    assert len(trace) > 3
    assert np.all(np.diff(trace) <= 1e-9 * np.abs(trace[1:]))


def test_plain_em_also_converges_and_is_monotone():
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"), method="em")
    model = fit.model
    plain = fit_em(model, accelerate=False)
    assert plain.optimizer == "em" and plain.converged
    assert plain.fmin == pytest.approx(fit.objective, abs=1e-6)
    assert np.all(np.diff(plain.trace) <= 1e-9)


def _dense_em_step(d, theta, reml):
    """One Laird-Ware / Lindstrom-Bates step for a single grouping factor, with n_j x n_j
    matrices (what lmmpy avoids), as the issue writes it."""
    fit = lmmpy.lmer(
        "Reaction ~ Days + (Days | Subject)", d, REML=reml, start=theta, optimizer=None, control={"check_conv": False}
    )
    X, y = fit.design.X, fit.design.y
    t = fit.design.reterms[0]
    T = theta_templates(np.asarray(theta), [2])[0]
    s2 = fit.sigma**2
    Sigma = s2 * T @ T.T
    groups = [np.flatnonzero(t.codes == j) for j in range(t.nlevels)]
    Vinv = [np.linalg.inv(t.X[g] @ Sigma @ t.X[g].T + s2 * np.eye(len(g))) for g in groups]
    XtVX = sum(X[g].T @ Vi @ X[g] for g, Vi in zip(groups, Vinv))
    beta = np.linalg.solve(XtVX, sum(X[g].T @ Vi @ y[g] for g, Vi in zip(groups, Vinv)))
    S_new, s2_num = np.zeros((2, 2)), 0.0
    for g, Vi in zip(groups, Vinv):
        Zj, r = t.X[g], y[g] - X[g] @ beta
        P = Vi - (Vi @ X[g] @ np.linalg.solve(XtVX, X[g].T @ Vi) if reml else 0)
        u = Sigma @ Zj.T @ Vi @ r
        S_new += np.outer(u, u) + Sigma - Sigma @ Zj.T @ P @ Zj @ Sigma
        e = r - Zj @ u
        s2_num += e @ e + s2 * np.trace(np.eye(len(g)) - s2 * P)
    S_new /= len(groups)
    s2_new = s2_num / len(y)
    return np.linalg.cholesky(S_new / s2_new)


@pytest.mark.parametrize("reml", [True, False])
def test_em_step_equals_laird_ware_formulas(reml):
    d = lmmpy.datasets.load("sleepstudy")
    theta = np.array([0.8, 0.1, 0.3])
    fit = lmmpy.lmer(
        "Reaction ~ Days + (Days | Subject)", d, REML=reml, start=theta, optimizer=None, control={"check_conv": False}
    )
    new = em_step(fit.model)
    T_new = theta_templates(new, [2])[0]
    assert np.allclose(T_new, _dense_em_step(d, theta, reml), rtol=1e-8, atol=1e-10)


def test_em_with_weights_and_several_factors():
    d = lmmpy.datasets.load("Penicillin")
    w = 1 + (np.arange(len(d)) % 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = lmmpy.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", d, weights=w)
        em = lmmpy.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", d, weights=w, method="em")
    assert em.objective == pytest.approx(opt.objective, abs=1e-6)


def test_em_summary_names_em():
    fit = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", lmmpy.datasets.load("Dyestuff"), method="em")
    assert fit.optsum.n_evals > 0 and fit.optsum.message.startswith("EM converged in")
    assert fit.objective == pytest.approx(319.6543, abs=1e-3)  # lme4's REML criterion
