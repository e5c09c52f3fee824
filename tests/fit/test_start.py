"""The optimizer's default start (lmmpy/fit/start.py): Swamy's moment estimate for a one-term
model, lme4's start in rms units otherwise, both from the cross-products alone."""

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.cross_products import CrossProducts
from lmmpy.fit.deviance import LmmModel
from lmmpy.fit.start import moment_start, rms_start

from conftest import reference


def model(formula, d, **kw):
    return lmmpy.mk_lmer_devfun(lmmpy.lformula(formula, d, **kw))


def test_balanced_moment_start_is_the_reml_estimate():
    """sleepstudy is balanced and its term spans the fixed effects: the two-stage estimate is
    the REML theta -- that of the fit from lme4's start to 1e-6 relative (its optimizer's
    tolerance), lme4's own to 2e-5 (bobyqa stops 9e-6 off) -- and the fit stops at its start."""
    d = lmmpy.datasets.load("sleepstudy")
    m = model("Reaction ~ Days + (Days | Subject)", d)
    from_lme4_start = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, start=[1.0, 0.0, 1.0])
    np.testing.assert_allclose(moment_start(m), from_lme4_start.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(moment_start(m), reference("sleepstudy_slopes_reml")["theta"], rtol=2e-5)
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d)
    assert fit.optsum.n_evals <= 3 and fit.objective == pytest.approx(
        reference("sleepstudy_slopes_reml")["criterion"], abs=1e-6
    )


def test_moment_start_by_hand_on_unbalanced_weighted_data():
    """Dropped rows, weights and an offset: the start against the two-stage estimator written
    out level by level (weighted least squares of y - offset on X, then of the residual on the
    term's columns within each level), 1e-10 relative; the fit from it reaches the fit from
    lme4's start (criterion 1e-8)."""
    d = lmmpy.datasets.load("sleepstudy").iloc[np.r_[0:170:2, 171:180]].reset_index(drop=True)
    w = np.linspace(0.5, 2.0, len(d))
    off = np.cos(np.arange(len(d)))
    m = model("Reaction ~ Days + (Days | Subject)", d, weights=w, offset=off)
    X = np.column_stack([np.ones(len(d)), d["Days"].to_numpy(float)])
    y = d["Reaction"].to_numpy() - off
    sw = np.sqrt(w)
    e = y - X @ np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    bs, Vs, rss, df = [], [], 0.0, 0
    for s in d["Subject"].cat.categories:
        i = (d["Subject"] == s).to_numpy()
        Zj, ej, wj = X[i], e[i], w[i]
        ZtZ = Zj.T @ (Zj * wj[:, None])
        b = np.linalg.solve(ZtZ, Zj.T @ (wj * ej))
        bs.append(b)
        Vs.append(np.linalg.inv(ZtZ))
        rss += np.sum(wj * (ej - Zj @ b) ** 2)
        df += i.sum() - 2
    s2 = rss / df
    T = np.linalg.cholesky((np.cov(np.array(bs), rowvar=False) - s2 * np.mean(Vs, axis=0)) / s2)
    np.testing.assert_allclose(moment_start(m), [T[0, 0], T[1, 0], T[1, 1]], rtol=1e-10)
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, weights=w, offset=off)
    lme4_start = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, weights=w, offset=off, start=[1.0, 0.0, 1.0])
    assert fit.objective == pytest.approx(lme4_start.objective, abs=1e-8)


def test_where_the_moment_start_does_not_apply_the_rms_start_is_used():
    """Dyestuff2's between-batch scatter is below its sampling variance (Sigma^ < 0: the fit is
    singular), Penicillin has two terms: lme4's start in rms units (1 for intercepts)."""
    for formula, name in (
        ("Yield ~ 1 + (1 | Batch)", "Dyestuff2"),
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ):
        m = model(formula, lmmpy.datasets.load(name))
        assert moment_start(m) is None
        np.testing.assert_array_equal(m.optimizer_start(), rms_start(m))
        np.testing.assert_array_equal(m.optimizer_start(), np.ones(m.lower.size))


def test_the_start_from_cross_products_alone_is_the_same():
    """A model made from its cross-products (a Dask fit's) starts where the design's does."""
    design = lmmpy.lformula("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))
    a = LmmModel(design)
    b = LmmModel.from_cross_products(CrossProducts.from_design(design), a.sizes, a.lower, design.n, design.p)
    np.testing.assert_array_equal(b.optimizer_start(), a.optimizer_start())
