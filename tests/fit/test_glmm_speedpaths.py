"""The fast paths of glmer's fit against the slow ones they replace.

- WeightedGram.refresh writes values only (index maps made once): on every route (stored
  pairs, dense, formed) and for k = 1, 2, 3 its values and level products are bitwise those
  of a WeightedGram built afresh from the new values (exact: the same products in the same
  order), and both agree with the dense product to 1e-12 (rounding of sums of ~10 terms).
"""

import numpy as np
import pytest
import scipy.sparse as sp

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
