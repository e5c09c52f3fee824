"""The analytic gradient of the profiled criteria equals central finite differences and the older
route through Omega^{-1} P (tests/fit/gradient_oracle.py), for ML and REML, scalar and vector-valued
terms, on and off the boundary."""

import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.gradient import profiled_gradient

from conftest import MODEL_IDS, SLOW, model_data, reference, spec
from gradient_oracle import general_gradient

# both routes of the Schur complement's weighted Gram (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("pair_route")

H = 1e-4  # central differences: truncation O(H^2), rounding ~1e-12 |f| / H


def fd_gradient(model, theta):
    g = np.array([(model(theta + e) - model(theta - e)) / (2 * H) for e in np.eye(theta.size) * H])
    model(theta)
    return g


def model_at(mid, reml):
    s = spec(mid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmmpy.lmer(
            s["formula"],
            model_data(mid),
            REML=reml,
            start=reference(mid)["theta"],
            optimizer=None,
            control={"check_conv": False},
        ).model


@pytest.mark.parametrize("mid", [m for m in MODEL_IDS if m not in SLOW])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("where", ["interior", "boundary"])
def test_gradient_equals_finite_differences(mid, reml, where):
    model = model_at(mid, reml)
    rng = np.random.default_rng(7)
    theta = np.abs(np.asarray(reference(mid)["theta"], float)) + 0.05 + 0.1 * rng.random(model.theta.size)
    if where == "boundary":
        theta[np.flatnonzero(model.lower == 0)[0]] = 0.0
    model(theta)
    g = profiled_gradient(model)
    fd = fd_gradient(model, theta)
    assert np.max(np.abs(g - fd)) <= 2e-4 * max(1.0, np.max(np.abs(fd))), (g, fd)


@pytest.mark.parametrize(
    "mid", ["penicillin_crossed_reml", "pastes_nested_reml", "sleep_minus1_reml", "mlbook2_vector_tail_reml"]
)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("boundary", [False, True])
def test_lead_route_equals_general_route(mid, reml, boundary):
    model = model_at(mid, reml)
    theta = np.asarray(reference(mid)["theta"], float) * 1.3 + 0.05
    if boundary:  # a tail term's variance on its zero bound
        theta[np.flatnonzero(model.lower == 0)[-1]] = 0.0
    model(theta)
    assert model.q_tail
    g_fast = profiled_gradient(model)
    g_general = general_gradient(model, chunk_entries=50)  # several chunks
    assert np.allclose(g_fast, g_general, rtol=1e-8, atol=1e-8), (g_fast, g_general)


def test_gradient_vanishes_at_the_optimum():
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))
    fit.model(fit.theta)
    assert np.max(np.abs(profiled_gradient(fit.model))) < 1e-3


@pytest.mark.parametrize("mid", ["sleepstudy_slopes_reml", "sleepstudy_slopes_ml", "dyestuff_ml", "mlbook2_slope_ml"])
def test_lead_route_equals_general_route_for_one_term(mid):
    """One term: the lead is X (REML) or empty (ML)."""
    model = model_at(mid, bool(spec(mid)["REML"]))
    assert not model.q_tail
    for theta in (np.asarray(reference(mid)["theta"], float) * 1.3 + 0.05, np.zeros(model.theta.size) + 0.2):
        model(theta)
        assert np.allclose(profiled_gradient(model), general_gradient(model), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    "data, formula",
    [
        ("mlbook2", "langPOST ~ IQ_verb + (IQ_verb | schoolnr) + (1 | denomina)"),  # vector first, scalar tail
        ("mlbook2", "langPOST ~ IQ_verb + (IQ_verb | schoolnr) + (IQ_verb | denomina)"),  # vector first and tail
        ("mlbook2", "langPOST ~ IQ_verb + (IQ_verb + ses | schoolnr) + (1 | denomina)"),  # a 3 x 3 first term
    ],
)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("boundary", [False, True])
def test_vector_first_term_routes_and_finite_differences(data, formula, reml, boundary):
    d = lmmpy.datasets.load(data)
    d["denomina"] = d["denomina"].astype(str)
    model = lmmpy.mk_lmer_devfun(lmmpy.lformula(formula, d), REML=reml)
    assert model.ks[0] > 1 and model.q_tail
    rng = np.random.default_rng(3)
    theta = np.where(model.lower == 0, 0.3, 0.05) + 0.2 * rng.random(model.theta.size)
    if boundary:  # the first term's slope variance, then a tail variance, on the zero bound
        theta[np.flatnonzero(model.lower == 0)[[1, -1]]] = 0.0
    model(theta)
    g = profiled_gradient(model)
    assert np.allclose(g, general_gradient(model, chunk_entries=50), rtol=1e-8, atol=1e-8)
    fd = fd_gradient(model, theta)
    assert np.max(np.abs(g - fd)) <= 2e-4 * max(1.0, np.max(np.abs(fd))), (g, fd)


@pytest.mark.parametrize(
    "data, formula",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),  # one term
        ("InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept)"),  # scalar terms
        ("mlbook2", "langPOST ~ IQ_verb + (IQ_verb | schoolnr) + (1 | denomina)"),  # vector first term
        ("mlbook2", "langPOST ~ IQ_verb + (1 | schoolnr) + (IQ_verb | denomina)"),  # vector tail term
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_lead_conditional_covariance_sums_equal_the_blocked_ones(data, formula, reml):
    """The EM algorithm's sums of conditional covariance blocks, through the lead's inverse,
    against the diagonal blocks from triangular solves with the blocked factor."""
    from lmmpy.fit.gradient import cond_cov_sums

    d = lmmpy.datasets.load(data)
    if data == "InstEval":
        d = d.iloc[:5000]
    elif data == "mlbook2":
        d["denomina"] = d["denomina"].astype(str)
    model = lmmpy.mk_lmer_devfun(lmmpy.lformula(formula, d), REML=reml)
    model(np.where(model.lower == 0, 0.4, 0.1) + 0.05 * np.arange(model.theta.size))
    blocked = [C.sum(axis=0) for C in model.L.cond_cov_blocks(model.sizes, reml=reml)]
    for a, b in zip(cond_cov_sums(model), blocked):
        assert np.allclose(a, b, rtol=1e-9, atol=1e-10)
