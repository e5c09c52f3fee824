"""The pieces of the blocked factorisation: weighted Gram matrices on a fixed pattern, the
in-place symmetrisation, and the factor against a dense Cholesky of the same matrix."""

import numpy as np
import pytest
import scipy.sparse as sp

import lmmpy
from lmmpy.fit.deviance import mirror_lower
from lmmpy.lmer import lformula, mk_lmer_devfun
from lmmpy.linalg import gram as gram_module
from lmmpy.linalg.gram import WeightedGram

# the routes a level of A can take (lmmpy.linalg.gram): stored pairs, formed each time, dense
# by BLAS, and the mix the cost rule picks with nothing stored
ROUTES = {
    "stored": dict(DENSE_SPEEDUP=0.0, STORED_BUILD=0.0),
    "formed": dict(PAIR_BUDGET=0, DENSE_SPEEDUP=0.0, STORED_BUILD=0.0, FORMED_PAIR=0.0),
    "dense": dict(PAIR_BUDGET=0, DENSE_SPEEDUP=1e12),
    "unstored": dict(PAIR_BUDGET=0),
}


@pytest.fixture(params=list(ROUTES))
def route(request, monkeypatch):
    """Forces every WeightedGram made in the test onto one route (its cost constants); yields
    the route's name."""
    for name, value in ROUTES[request.param].items():
        monkeypatch.setattr(gram_module, name, value)
    return request.param


def random_sparse(m, n, density, seed):
    rng = np.random.default_rng(seed)
    return sp.random(m, n, density=density, random_state=rng, format="csr") + sp.random(
        m, n, density=density / 4, random_state=rng, format="csr"
    )


def test_weighted_gram_equals_the_dense_product(route):
    A = random_sparse(40, 300, 0.05, 1)
    gram = WeightedGram(A)
    assert_on_route(gram, A, 1, route)
    v = np.random.default_rng(2).random(300)
    dense = (A @ sp.diags(v) @ A.T).toarray()
    assert np.all(gram.rows >= gram.cols)
    assert np.allclose(gram.values(v), dense[gram.rows, gram.cols], rtol=1e-12, atol=1e-12)
    # every nonzero of the lower triangle is one of the positions
    lower = np.tril(dense)
    covered = np.zeros_like(lower, dtype=bool)
    covered[gram.rows, gram.cols] = True
    assert not np.any(lower[~covered])
    C = np.random.default_rng(3).random((40, 40))
    C = C + C.T  # <C, A diag(v) A'> = sum_j v_j a_j' C a_j
    assert np.isclose(v @ gram.level_products(C), np.sum(C * dense), rtol=1e-12)


def test_weighted_gram_with_empty_columns_and_one_entry_columns():
    A = sp.csr_matrix(np.array([[1.0, 0, 2, 0], [0, 0, 3, 0], [4, 0, 0, 5]]))
    gram = WeightedGram(A)
    v = np.array([1.0, 2.0, 3.0, 4.0])
    dense = A.toarray() @ np.diag(v) @ A.toarray().T
    assert np.allclose(gram.values(v), dense[gram.rows, gram.cols])


def test_mirror_lower_makes_the_lower_triangle_symmetric():
    rng = np.random.default_rng(4)
    M = rng.random((600, 600))  # more than one block of 256
    expected = np.tril(M) + np.tril(M, -1).T
    assert np.array_equal(mirror_lower(M.copy(), block=256), expected)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ service + (1 | s) + (1 | d) + (1 | dept)",  # scalar tail
        "y ~ service + (1 | s) + (service | dept)",
    ],
)  # vector tail
def test_blocked_factor_reproduces_the_dense_matrix(formula):
    d = lmmpy.datasets.load("InstEval").iloc[:4000]
    model = mk_lmer_devfun(lformula(formula, d), REML=True)
    theta = np.linspace(0.3, 0.9, model.theta.size)
    model(theta)
    L = model.L
    # Omega = [Z Lambda  X  y]'[Z Lambda  X  y] + diag(I, 0, 0) from the model's own matrices
    q = sum(l * k for l, k in model.sizes)
    Lam = sp.block_diag(
        [
            sp.kron(sp.identity(l), T)
            for (l, _), T in zip(model.sizes, lmmpy.fit.deviance.theta_templates(theta, model.ks))
        ]
    )
    Z = sp.hstack([t.Z() for t in model.design.reterms]).tocsr()
    M = sp.hstack([Z @ Lam, sp.csr_matrix(np.column_stack([model.design.X, model.design.y]))]).toarray()
    Omega = M.T @ M + np.diag(np.r_[np.ones(q), np.zeros(model.p + 1)])
    Ld = np.linalg.cholesky(Omega)
    assert np.isclose(L.logdet_L2, 2 * np.log(np.diag(Ld)[:q]).sum(), rtol=1e-10)
    assert np.isclose(L.pwrss, Ld[-1, -1] ** 2, rtol=1e-9)
    q1 = model.sizes[0][0] * model.sizes[0][1]
    assert np.allclose(np.tril(L.Ltt), Ld[q1:, q1:], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_grouped_gram_and_level_products(k, route):
    """Columns in groups of k (one per level) with symmetric k x k weights (not positive
    definite: the dense route splits them by sign), and A_j' C A_j."""
    A = random_sparse(30, 40 * k, 0.08, 5)
    gram = WeightedGram(A, group=k)
    assert_on_route(gram, A, k, route)
    rng = np.random.default_rng(6)
    V = rng.random((40, k, k))
    V = V + np.swapaxes(V, 1, 2)
    B = sp.block_diag(list(V))
    dense = (A @ B @ A.T).toarray()
    assert np.allclose(gram.values(V[:, 0, 0] if k == 1 else V), dense[gram.rows, gram.cols], rtol=1e-12)
    C = rng.random((30, 30))
    C = C + C.T
    Ad = A.toarray()
    expected = np.array([Ad[:, j * k : (j + 1) * k].T @ C @ Ad[:, j * k : (j + 1) * k] for j in range(40)])
    got = gram.level_products(np.tril(C) + np.triu(rng.random((30, 30)), 1))  # only the lower triangle is read
    assert np.allclose(got, expected[:, 0, 0] if k == 1 else expected, rtol=1e-10, atol=1e-12)
    # a C with more rows than A (the lead of a REML gradient: X's rows after the random
    # effects'): its leading block is what counts
    big = np.tril(rng.random((33, 33)))
    big[:30, :30] = np.tril(C)
    assert np.allclose(gram.level_products(big), got, rtol=1e-12, atol=1e-14)


def assert_on_route(gram, A, k, route):
    """The levels with entries went the forced route (the unstored mix: none stored)."""
    counts = np.diff(sp.csc_matrix(A).indptr[::k])
    used = gram.route[counts > 0]
    want = {"stored": {0}, "formed": {2}, "dense": {1}, "unstored": {1, 2}}[route]
    assert set(np.unique(used)) <= want


def test_unstored_mix_takes_both_routes():
    """With nothing stored the cost rule sends a level with many entries dense and the
    others to the formed route."""
    rng = np.random.default_rng(7)
    full = sp.csc_matrix(rng.random((400, 1)))  # one full column: dense
    A = sp.hstack([full, sp.random(400, 199, density=0.01, random_state=rng)], format="csc")
    gram = WeightedGram(A, budget=0)
    assert gram.route[0] == 1 and set(gram.route[1:][np.diff(A.tocsc().indptr)[1:] > 0]) == {2}
    v = rng.random(200)
    dense = (A @ sp.diags(v) @ A.T).toarray()
    assert np.allclose(gram.values(v), dense[gram.rows, gram.cols], rtol=1e-12, atol=1e-14)


def test_a_pickled_gram_gives_the_same_products(route):
    """A bootstrap worker gets the model pickled: its gram (work buffer and dense columns
    left behind) gives the same values and level products."""
    import pickle

    A = random_sparse(40, 300, 0.05, 8)
    gram = WeightedGram(A)
    v = np.random.default_rng(9).random(300)
    before = gram.values(v)
    copy = pickle.loads(pickle.dumps(gram))
    assert copy._buffer is None and copy._dense_cache is None
    assert np.array_equal(copy.values(v), before)
    C = np.tril(np.random.default_rng(10).random((40, 40)))
    assert np.allclose(copy.level_products(C), gram.level_products(C), rtol=1e-14, atol=0)
