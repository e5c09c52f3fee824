"""The pure factor: model.factor(theta) hands out a factor no later evaluation changes, and
taking it changes nothing another caller sees (the optimizer's working point stays)."""

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.deviance import LmmModel, ml_deviance, reml_criterion

MODELS = [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "Pastes"),
]


def _model(formula, dataset, REML=True):
    return LmmModel(lmmpy.lformula(formula, lmmpy.datasets.load(dataset)), REML=REML)


def _numbers(L):
    return (L.L11.blocks.copy(), L.Lt1_z.toarray().copy(), L.Lt1_xy.copy(), L.Ltt.copy())


@pytest.mark.parametrize("formula,dataset", MODELS)
def test_factor_is_not_changed_by_later_evaluations(formula, dataset):
    model = _model(formula, dataset)
    theta = model.theta * 0.7
    L = model.factor(theta)
    before = _numbers(L)
    rng = np.random.default_rng(1)
    for _ in range(8):  # the optimizer's hot path and other factors at other thetas
        other = np.maximum(theta + rng.normal(scale=0.3, size=theta.size), model.lower)
        model(other)
        model.gradient()
        model.factor(other)
    for a, b in zip(before, _numbers(L)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("formula,dataset", MODELS)
def test_factor_leaves_the_working_point_alone(formula, dataset):
    model = _model(formula, dataset)
    start = model.theta.copy()
    f0 = model(start)
    L0, evals = model.L, model.n_evals
    L = model.factor(start * 0.5)
    assert model.L is L0 and np.array_equal(model.theta, start) and model.n_evals == evals
    assert model.objective() == f0
    assert L is not L0 and model.factor(start * 0.5) is L  # cached by theta


@pytest.mark.parametrize("REML", [True, False])
def test_factor_equals_the_working_factor(REML):
    model = _model(*MODELS[1], REML=REML)
    theta = np.array([0.9, 1.7])
    f = model(theta)
    L = model.factor(theta)
    assert np.array_equal(L.Ltt, model.L.Ltt) and L.Ltt is not model.L.Ltt
    assert model.criterion(theta) == f
    expected = (
        reml_criterion(L, model.n, model.p, model.log_w_sum) if REML else ml_deviance(L, model.n, model.log_w_sum)
    )
    assert model.criterion_of(L) == expected


def test_with_reml_shares_the_cross_products_and_leaves_the_model():
    model = _model(*MODELS[0], REML=True)
    ml = model.with_reml(False)
    assert model.REML and not ml.REML and ml.Att is model.Att and model.with_reml(True) is model
    theta = model.theta.copy()
    assert ml(theta) == _model(*MODELS[0], REML=False)(theta)
    assert model(theta) == _model(*MODELS[0], REML=True)(theta)
    y = lmmpy.datasets.load("sleepstudy").Reaction.to_numpy() * 2.0
    model.set_response(y)  # seen by the twin too: its factors are forgotten
    assert ml.L is None
    assert ml.criterion(theta) == _model(*MODELS[0], REML=False).set_response(y)(theta)


def test_fit_reads_the_factor_not_the_working_point():
    sleep = lmmpy.datasets.load("sleepstudy")
    fit = lmmpy.lmer(MODELS[0][0], sleep)
    fixef, vcov, dev = fit.fixef.copy(), fit.vcov.copy(), fit.deviance
    fit.model(fit.theta * 3.0)  # move the working point away
    assert np.array_equal(fit.fixef, fixef) and fit.deviance == dev
    assert np.array_equal(fit.se, np.sqrt(np.diag(vcov)))
    assert fit.ranef["Subject"].shape == (18, 2)
