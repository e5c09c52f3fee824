"""The fast paths of glmer's fit against the slow ones they replace.

- WeightedGram.refresh writes values only (index maps made once): on every route (stored
  pairs, dense, formed) and for k = 1, 2, 3 its values and level products are bitwise those
  of a WeightedGram built afresh from the new values (exact: the same products in the same
  order), and both agree with the dense product to 1e-12 (rounding of sums of ~10 terms).
- PIRLS's logit (mu, mu_eta) pair and 0/1 binomial deviance residuals are bitwise the general
  formulas'; ReweightedLmm.update's cross-products are those made afresh from the rows (1e-12);
  stage 0 hands on the PIRLS result of its answer (the lowest deviance it evaluated); a
  ReweightedLmm twin factors bitwise as a fresh problem and leaves the original alone.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import lmmpy
from glmm_refs import model_inputs, reference
from lmmpy.fit.laplace_gradient import laplace_gradient, supports_analytic_gradient
from lmmpy.linalg import gram as gram_module
from lmmpy.linalg.gram import WeightedGram

ROUTES = {  # the cost constants that put every level on one route (as tests/linalg does)
    "stored": dict(DENSE_SPEEDUP=0.0, STORED_BUILD=0.0),
    "formed": dict(PAIR_BUDGET=0, DENSE_SPEEDUP=0.0, STORED_BUILD=0.0, FORMED_PAIR=0.0),
    "dense": dict(PAIR_BUDGET=0, DENSE_SPEEDUP=1e12),
    "mixed": dict(PAIR_BUDGET=150, DENSE_SPEEDUP=0.0, STORED_BUILD=0.0, FORMED_PAIR=0.0),
}


@pytest.fixture(params=list(ROUTES))
def route(request, monkeypatch):
    for name, value in ROUTES[request.param].items():
        monkeypatch.setattr(gram_module, name, value)
    return request.param


@pytest.mark.parametrize("k", [1, 2, 3])
def test_refresh_is_a_fresh_gram_of_the_new_values(route, k):
    rng = np.random.default_rng(k)
    m, levels = 30, 60
    A = sp.random(m, levels * k, density=0.15, random_state=rng, format="csr")
    A.data = rng.normal(size=A.nnz)
    gram = WeightedGram(A, group=k, refreshable=True)
    assert gram._value_maps is not None  # the values-only path, not the rebuild
    expect = {"stored": 0, "dense": 1, "formed": 2}
    if route in expect:
        assert np.all(gram.route[np.diff(sp.csc_matrix(A).indptr[::k]) > 0] == expect[route])
    else:
        assert {0, 2} <= set(gram.route.tolist())
    for _ in range(3):
        data = rng.normal(size=A.nnz)
        data[::7] = 0.0  # zeros among the values: the pattern stays
        gram.refresh(data)
        B = A.copy()
        B.data = data
        fresh = WeightedGram(B, group=k)
        V = rng.normal(size=(levels,) if k == 1 else (levels, k, k))
        if k > 1:
            V = V + np.swapaxes(V, 1, 2)
        dense = (B @ sp.block_diag([np.atleast_2d(v) for v in V]) @ B.T).toarray()
        got = gram.values(V)
        np.testing.assert_allclose(got, dense[gram.rows, gram.cols], rtol=1e-12, atol=1e-12)
        # the fresh gram covers every nonzero of the lower triangle (the formed route's pattern
        # missed a level's cross-column products for k > 1 before it took full k x k blocks)
        covered = np.zeros((m, m), dtype=bool)
        covered[fresh.rows, fresh.cols] = True
        assert not np.any(np.tril(dense)[~covered])
        at_fresh = dict(zip(zip(fresh.rows, fresh.cols), fresh.values(V)))
        # bitwise the fresh gram's values, at its positions (and 0 at the formed route's places
        # kept for products that cancel to 0 for these values)
        assert all(at_fresh.get((r, c), 0.0) == v for r, c, v in zip(gram.rows, gram.cols, got))
        assert set(at_fresh) <= set(zip(gram.rows, gram.cols))
        C = rng.normal(size=(m, m))
        C = C + C.T
        np.testing.assert_allclose(gram.level_products(C), fresh.level_products(C), rtol=1e-12, atol=1e-12)


# -- the analytic gradient of the Laplace deviance ------------------------------------------------

GRADIENT_MODELS = [
    "cbpp_binomial_laplace",
    "verbagg_binomial_crossed",
    "verbagg_binomial_slope",  # a vector-valued first term with a tail
    "grouseticks_poisson_crossed",
    "binomial_slope_cbind",
]


def _glmm_model(model_id):
    """The reference model's deviance function and lme4's estimates (theta, beta)."""
    s, d, family, weights, offset = model_inputs(model_id)
    design = lmmpy.glformula(s["formula"], d, weights=weights, offset=offset)
    ref = reference(model_id)
    x = np.concatenate([np.asarray(ref["theta"], float), np.asarray(list(ref["fixef"].values()), float)])
    return lmmpy.mk_glmer_devfun(design, family, nAGQ=1), x


@pytest.mark.parametrize("model_id", GRADIENT_MODELS)
def test_laplace_gradient_is_the_central_difference(model_id):
    """Off lme4's optimum (theta x 1.1 + 0.05, beta + 0.03, where the gradient is far from 0):
    the analytic gradient against central differences of the deviance (step 1e-4 relative;
    their error, h^2 f''' plus the deviance's rounding 1e-12 |D| / h, is ~1e-7 of |g|): 1e-6
    relative to the largest component."""
    model, x = _glmm_model(model_id)
    assert supports_analytic_gradient(model)
    nt = model.lower.size
    x = np.concatenate([x[:nt] * 1.1 + 0.05, x[nt:] + 0.03])
    res = model.pirls(x[:nt], x[nt:])
    analytic = laplace_gradient(model, res, x[:nt])
    numeric = np.empty(x.size)
    for i in range(x.size):
        h = 1e-4 * max(1.0, abs(x[i]))
        e = np.zeros(x.size)
        e[i] = h
        numeric[i] = (
            model.deviance(x[:nt] + e[:nt], x[nt:] + e[nt:]) - model.deviance(x[:nt] - e[:nt], x[nt:] - e[nt:])
        ) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=1e-6 * np.abs(numeric).max())


def test_no_analytic_gradient_without_a_canonical_link():
    model, _ = _glmm_model("cbpp_binomial_laplace")
    probit = lmmpy.mk_glmer_devfun(model.design, lmmpy.families.binomial(link="probit"), nAGQ=1)
    agq = lmmpy.mk_glmer_devfun(model.design, lmmpy.families.binomial(), nAGQ=5)
    assert not supports_analytic_gradient(probit) and not supports_analytic_gradient(agq)


@pytest.mark.parametrize("model_id", ["verbagg_binomial_crossed", "verbagg_binomial_slope"])
def test_leverages_by_dense_and_sparse_tail_agree(model_id, monkeypatch):
    """The leverages' two routes for L_t1 (dense gather, sparse product): the same gradient to
    rounding (1e-10 relative to its largest component)."""
    from lmmpy.fit import laplace_gradient as module

    model, x = _glmm_model(model_id)
    nt = model.lower.size
    res = model.pirls(x[:nt], x[nt:])
    dense = laplace_gradient(model, res, x[:nt])
    monkeypatch.setattr(module, "DENSE_LT1_ENTRIES", 0)
    sparse = laplace_gradient(model, res, x[:nt])
    np.testing.assert_allclose(dense, sparse, rtol=0, atol=1e-10 * np.abs(dense).max())


@pytest.mark.parametrize("model_id", ["cbpp_binomial_laplace", "verbagg_binomial_crossed"])
def test_lme4_deviance_start_problem_changes_no_number(model_id, monkeypatch):
    """lme4_deviance's first PIRLS iteration on the problem kept at lp0's weights (its
    cross-products made once, its factors cached by theta) against the shared problem
    updated afresh each time: bitwise the same deviances, over a deriv12-like set of points."""
    from lmmpy.fit.pirls import GlmmModel

    model, x = _glmm_model(model_id)
    nt = model.lower.size
    lp0 = model.offset + model.X @ x[nt:] + 0.1  # any start: the same for every point
    rng = np.random.default_rng(1)
    points = [x] + [x + 1e-4 * rng.choice([-1.0, 0.0, 1.0], size=x.size) for _ in range(12)]
    kept = [model.lme4_deviance(p[:nt], p[nt:], lp0) for p in points]

    def afresh(self, theta, eta):
        W, r = self.working(eta, self._mu(eta))
        return self.pls_factor(theta, W, eta - self.offset + r)

    monkeypatch.setattr(GlmmModel, "_start_factor", afresh)
    assert [model.lme4_deviance(p[:nt], p[nt:], lp0) for p in points] == kept


def test_logit_link_pair_and_binary_deviance_are_the_general_numbers():
    """The logit link's (linkinv, mu_eta) from one exponential, with its clamps skipped when no
    |eta| exceeds 30, and a 0/1 binomial's deviance residuals from one logarithm: bitwise the
    numbers of R's formulas as the general functions write them (those clamps applied, both
    y log(y / mu) terms), inside and beyond the threshold."""
    from lmmpy import families

    rng = np.random.default_rng(3)
    link = families.LINKS["logit"]
    for eta in (rng.normal(0.0, 3.0, 5000), rng.normal(0.0, 40.0, 5000)):
        e = np.exp(np.clip(eta, -30.0, 30.0))
        clamped = np.where(eta < -30.0, families.EPS, np.where(eta > 30.0, 1.0 / families.EPS, e))
        mu_r = clamped / (1.0 + clamped)
        mu_eta_r = np.where(np.abs(eta) > 30.0, families.EPS, e / (1.0 + e) ** 2)
        mu, mu_eta = families.binomial().linkinv_mu_eta(eta)
        assert np.array_equal(mu, mu_r) and np.array_equal(mu_eta, mu_eta_r)
        assert np.array_equal(link.linkinv(eta), mu_r) and np.array_equal(link.mu_eta(eta), mu_eta_r)
        y = (rng.uniform(size=eta.size) < mu_r).astype(float)
        wt = rng.uniform(0.5, 3.0, eta.size)
        inside = (mu_r > 0) & (mu_r < 1)
        general = families._binomial_dev(y[inside], mu_r[inside], wt[inside])
        assert np.array_equal(families.binomial_dev_binary(y[inside] == 1, mu_r[inside], wt[inside]), general)


@pytest.mark.parametrize("model_id", ["cbpp_binomial_laplace", "verbagg_binomial_slope"])
def test_reweighted_update_is_the_cross_products_of_the_rows(model_id):
    """ReweightedLmm.update (its row gather and products skipped for random intercepts) against
    CrossProducts made afresh from the rows with the same weights and response: the same
    blocks to rounding (1e-12 relative: other orders of summation)."""
    from lmmpy.fit.cross_products import CrossProducts

    model, _ = _glmm_model(model_id)
    rng = np.random.default_rng(4)
    w, z = rng.uniform(0.1, 2.0, model.n), rng.normal(size=model.n)
    model.pls.update(w, z)
    cp = model.pls.cp
    fresh = CrossProducts.from_rows(model.terms, model.Zs, model.X, z, w)
    for name in ("A11", "Att"):
        assert np.allclose(
            getattr(cp, name), getattr(fresh, name), rtol=1e-12, atol=1e-12 * np.abs(getattr(fresh, name)).max()
        )
    assert np.allclose(cp.At1_xy, fresh.At1_xy, rtol=1e-12, atol=1e-12 * np.abs(fresh.At1_xy).max())
    if model.q_tail:
        assert np.allclose(cp.At1_z.toarray(), fresh.At1_z.toarray(), rtol=1e-12, atol=1e-12)


def test_stage0_hands_its_answer_s_pirls_result_on():
    """glmer's stage 0 keeps the PIRLS result of COBYQA's answer (lp0 and the Laplace stage's
    first start come from it, not from more PIRLS runs): its modes and deviance are those of
    PIRLS at that theta (beta found inside it) to 1e-8 relative (another warm start: PIRLS's
    tolerance), and the answer is the lowest deviance evaluated."""
    from lmmpy.fit import glmm_driver
    from lmmpy.fit.glmm_driver import GlmerControl

    model, _ = _glmm_model("cbpp_binomial_laplace")
    seen = []
    evaluate = model.nagq0_result

    def recording(theta, beta0):
        res = evaluate(theta, beta0)
        seen.append(res.deviance)
        return res

    model.nagq0_result = recording
    theta, beta, dev, found, *_ = glmm_driver._stage0(model, model.theta_start(), model.glm_start(), GlmerControl())
    assert found is not None and dev == found.deviance == min(seen)
    model.u = np.zeros(model.q)
    again = evaluate(theta, model.glm_start())
    assert abs(again.deviance - dev) <= 1e-8 * abs(dev)
    assert np.allclose(again.u, found.u, rtol=1e-6, atol=1e-8) and np.allclose(again.beta, beta, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("model_id", ["cbpp_binomial_laplace", "verbagg_binomial_slope"])
def test_reweighted_twin_is_independent_and_a_fresh_problem(model_id):
    """ReweightedLmm.twin (lme4_deviance's start problem): updated with other weights, its
    factor is bitwise that of a problem set up afresh, and the original's factor is unchanged."""
    from lmmpy.fit.reweighted import ReweightedLmm

    model, x = _glmm_model(model_id)
    theta = x[: model.lower.size]
    rng = np.random.default_rng(5)
    w, z = rng.uniform(0.1, 2.0, model.n), rng.normal(size=model.n)
    before = model.pls.update(w, z).factor(theta).logdet_L2
    twin = model.pls.twin()
    w2, z2 = rng.uniform(0.1, 2.0, model.n), rng.normal(size=model.n)
    L_twin = twin.update(w2, z2).factor(theta)
    L_fresh = ReweightedLmm(model.terms, model.Zs, model.X, model.lower).update(w2, z2).factor(theta)
    assert L_twin.logdet_L2 == L_fresh.logdet_L2 and np.array_equal(L_twin.Ltt, L_fresh.Ltt)
    assert np.array_equal(L_twin.solve_u_beta()[0], L_fresh.solve_u_beta()[0])
    model.pls.model._factors.clear()  # the original's factor made anew from its own values
    assert model.pls.model.factor(theta).logdet_L2 == before
