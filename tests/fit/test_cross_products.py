"""CrossProducts: the blocks of [Z X y]'W[Z X y] as their own stage; partitions of the rows
add up to the whole (the reduction a computation over partitions needs)."""

import dataclasses

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.cross_products import CrossProducts
from lmmpy.fit.deviance import LmmModel

CASES = [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", {}),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", {}),
    ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "Pastes", {"weights": True}),
]


def _design(formula, dataset, weights=False):
    d = lmmpy.datasets.load(dataset)
    kw = {}
    if weights:
        kw = {"weights": np.linspace(0.5, 2.0, len(d)), "offset": np.linspace(-1.0, 1.0, len(d))}
    return lmmpy.lformula(formula, d, **kw)


def _rows(design, idx):
    """The design restricted to the rows idx, every term keeping all its levels."""

    def pick(a):
        return None if a is None else a[idx]

    terms = [dataclasses.replace(t, codes=t.codes[idx], X=t.X[idx]) for t in design.reterms]
    return dataclasses.replace(
        design,
        y=design.y[idx],
        X=design.X[idx],
        reterms=terms,
        weights=pick(design.weights),
        offset=pick(design.offset),
    )


def _blocks(cp):
    return [cp.A11, cp.At1_z.toarray(), cp.At1_xy, cp.Att_zz.toarray(), cp.Att]


@pytest.mark.parametrize("formula,dataset,kw", CASES)
def test_two_halves_add_up_to_the_whole(formula, dataset, kw):
    design = _design(formula, dataset, **kw)
    rng = np.random.default_rng(0)
    order = rng.permutation(design.n)
    first, second = np.sort(order[: design.n // 2]), np.sort(order[design.n // 2 :])
    whole = CrossProducts.from_design(design)
    summed = CrossProducts.from_design(_rows(design, first)) + CrossProducts.from_design(_rows(design, second))
    for a, b in zip(_blocks(whole), _blocks(summed)):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-9)
    # and the model built from the sum alone has the whole's criterion
    model = LmmModel(design)
    w = design.weights
    reduced = LmmModel.from_cross_products(
        summed, model.sizes, design.theta_lower(), design.n, design.p, float(np.log(w).sum()) if w is not None else 0.0
    )
    theta = model.theta * 0.8
    assert reduced.design is None and reduced(theta) == pytest.approx(model(theta), rel=1e-12)
    assert np.allclose(reduced.gradient(theta), model.gradient(theta), rtol=1e-8, atol=1e-8)


def test_a_sum_has_no_rows_to_change_the_response():
    design = _design(*CASES[0][:2])
    cp = CrossProducts.from_design(design)
    with pytest.raises(ValueError, match="no rows"):
        (cp + cp).set_response(design.y)


def test_model_from_its_cross_products_equals_the_designs():
    design = _design(*CASES[1][:2])
    a, b = LmmModel(design), LmmModel(design, cross_products=CrossProducts.from_design(design))
    theta = np.array([0.5, 1.5])
    assert a(theta) == b(theta)
    y = design.y[::-1].copy()
    assert a.set_response(y)(theta) == LmmModel(dataclasses.replace(design, y=y))(theta)


@pytest.mark.parametrize("formula,dataset,kw", CASES)
def test_blocks_equal_the_sparse_products(formula, dataset, kw):
    """Every block against its definition by scipy's sparse products of Z = [Z_1 Z_t], X and y
    (weighted, less the offset): Z_1'[X y] is summed level by level without building Z_1,
    so it is held to the sparse product (1e-13 relative), and so are the response's products
    after set_response."""
    design = _design(formula, dataset, **kw)
    w = design.weights if design.weights is not None else np.ones(design.n)
    y = design.y - (design.offset if design.offset is not None else 0.0)
    Z1, Zt = design.reterms[0].Z(), design.Z()[:, design.reterms[0].q :]
    XyW = np.column_stack([design.X, y]) * w[:, None]
    cp = CrossProducts.from_design(design)
    assert np.allclose(cp.At1_xy, (Z1.T @ XyW).T, rtol=1e-13, atol=0)
    assert np.allclose(cp.At1_z.toarray(), (Zt.T @ (Z1.multiply(w[:, None]))).toarray(), rtol=1e-13, atol=0)
    y2 = np.sin(np.arange(design.n))
    cp.set_response(y2 + (design.offset if design.offset is not None else 0.0))
    assert np.allclose(cp.At1_xy[-1], Z1.T @ (y2 * w), rtol=1e-13, atol=1e-12)
    assert np.allclose(cp.rows.products_with(y2 * np.sqrt(w))[: design.reterms[0].q], Z1.T @ (y2 * w), rtol=1e-13)


def test_optimizer_start_is_lme4s_in_rms_units():
    """The optimizer's default start: 1 / rms(x_a) on the diagonal (lme4's 1 for an intercept),
    the same in any units of the covariate (Days * 4: the slope's start / 4, exactly), and the
    same for a model made from its cross-products alone (a Dask fit's)."""
    d = lmmpy.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject) + (1 + Days || Days_f)"
    d["Days_f"] = d["Days"].astype(str)
    design = lmmpy.lformula(formula, d)
    model = LmmModel(design)
    rms = np.sqrt(np.mean(d["Days"].to_numpy(float) ** 2))
    start = dict(zip(design.theta_names(), model.optimizer_start()))
    assert start["Subject.(Intercept)"] == 1.0 and start["Subject.Days.(Intercept)"] == 0.0
    assert start["Subject.Days"] == pytest.approx(1 / rms, rel=1e-15)
    assert start["Days_f.Days"] == pytest.approx(1 / rms, rel=1e-15) and start["Days_f.(Intercept)"] == 1.0
    d4 = d.assign(Days=d["Days"] * 4)
    start4 = LmmModel(lmmpy.lformula(formula, d4)).optimizer_start()
    assert np.array_equal(
        start4 * np.where(np.isin(design.theta_names(), ["Subject.Days", "Days_f.Days"]), 4, 1), model.optimizer_start()
    )
    cp_model = LmmModel.from_cross_products(
        CrossProducts.from_design(design), model.sizes, model.lower, design.n, design.p
    )
    assert np.array_equal(cp_model.optimizer_start(), model.optimizer_start())


def test_first_term_products_column_by_column_beyond_the_budget(monkeypatch):
    """Beyond PRODUCTS_AT_ONCE the products are summed a column at a time (memory n k, not
    n k C): the same sums, bitwise (each column's products are summed in the same order)."""
    from lmmpy.fit import cross_products

    rng = np.random.default_rng(3)
    codes, values, M = rng.integers(0, 7, 50), rng.normal(size=(50, 2)), rng.normal(size=(50, 4))
    whole = cross_products.first_term_products(codes, values, 7, M)
    monkeypatch.setattr(cross_products, "PRODUCTS_AT_ONCE", 10)
    np.testing.assert_array_equal(cross_products.first_term_products(codes, values, 7, M), whole)
