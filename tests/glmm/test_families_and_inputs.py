"""lmmpy.families (R's definitions) and glmer's inputs: responses as R takes them, errors."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lmmpy
from lmmpy import families
from lmmpy.linalg.gram import WeightedGram

LINKS = [
    (families.binomial, ["logit", "probit", "cauchit", "cloglog", "log"], np.array([0.02, 0.3, 0.5, 0.7])),
    (families.poisson, ["log", "sqrt", "identity"], np.array([0.5, 2.0, 10.0])),
    (families.Gamma, ["inverse", "log", "identity"], np.array([0.5, 2.0, 10.0])),
    (families.inverse_gaussian, ["1/mu^2", "inverse", "log", "identity"], np.array([0.5, 2.0, 10.0])),
]


@pytest.mark.parametrize("make, links, mu", LINKS)
def test_links_invert_and_differentiate(make, links, mu):
    for link in links:
        fam = make(link=link)
        eta = fam.linkfun(mu)
        np.testing.assert_allclose(fam.linkinv(eta), mu, rtol=1e-12)
        h = 1e-6
        numeric = (fam.linkinv(eta + h) - fam.linkinv(eta - h)) / (2 * h)
        np.testing.assert_allclose(fam.mu_eta(eta), numeric, rtol=1e-6)


def test_unknown_link_and_family_are_clear_errors():
    with pytest.raises(lmmpy.LmmError, match="link 'identity' is not available for the binomial"):
        families.binomial(link="identity")
    with pytest.raises(lmmpy.LmmError, match="family must be one of"):
        families.as_family("tweedie")


def test_deviance_residuals_are_twice_the_loglik_gap():
    """d_i = 2 (log f(y | y) - log f(y | mu)): the saturated fit's log-likelihood less the fit's."""
    y, mu, n = np.array([0.0, 0.25, 1.0]), np.array([0.2, 0.4, 0.9]), np.array([4.0, 4.0, 4.0])
    fam = families.binomial()
    d = fam.dev_resids(y, mu, n)
    sat = [
        fam.aic(y[i : i + 1], n[i : i + 1], np.clip(y[i : i + 1], 1e-300, 1 - 1e-16), n[i : i + 1]) for i in range(3)
    ]
    fit = [fam.aic(y[i : i + 1], n[i : i + 1], mu[i : i + 1], n[i : i + 1]) for i in range(3)]
    np.testing.assert_allclose(d, np.array(fit) - np.array(sat), rtol=1e-9, atol=1e-12)
    yp, mup = np.array([0.0, 3.0, 7.0]), np.array([1.0, 2.5, 9.0])
    pois = families.poisson()
    sat = [pois.aic(yp[i : i + 1], None, np.maximum(yp[i : i + 1], 1e-300), np.ones(1)) for i in range(3)]
    fit = [pois.aic(yp[i : i + 1], None, mup[i : i + 1], np.ones(1)) for i in range(3)]
    np.testing.assert_allclose(
        pois.dev_resids(yp, mup, np.ones(3)), np.array(fit) - np.array(sat), rtol=1e-9, atol=1e-12
    )


def _cbpp():
    d = pd.read_csv(__import__("pathlib").Path(__file__).resolve().parents[2] / "data" / "cbpp.csv")
    d["herd"] = d["herd"].astype(str).astype("category")
    d["period"] = d["period"].astype(str).astype("category")
    return d


def test_binary_responses_in_every_form_give_one_fit():
    """cbind(s, f) on the herds and the same data as one 0/1 row per animal fit the same model
    (the binomial coefficients only shift the log-likelihood), as do booleans and a factor."""
    d = _cbpp()
    agg = lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")
    rows = []
    for r in d.itertuples():
        rows += [(r.herd, r.period, 1)] * r.incidence + [(r.herd, r.period, 0)] * (r.size - r.incidence)
    long = pd.DataFrame(rows, columns=["herd", "period", "y"])
    long["sick"] = long["y"] == 1
    long["status"] = np.where(long["y"] == 1, "sick", "healthy")  # "healthy" first: failure
    for resp in ("y", "sick", "status"):
        fit = lmmpy.glmer(f"{resp} ~ period + (1 | herd)", long, family="binomial")
        np.testing.assert_allclose(fit.fixef.to_numpy(), agg.fixef.to_numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fit.theta, agg.theta, rtol=1e-4)


def test_bad_inputs_are_lmm_errors():
    d = _cbpp()
    with pytest.raises(lmmpy.LmmError, match="single, scalar random-effects term"):
        lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | period)", d, nAGQ=5)
    with pytest.raises(lmmpy.LmmError, match="nAGQ must be a whole number"):
        lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, nAGQ=1.5)
    d2 = d.assign(neg=-d["incidence"])
    with pytest.raises(lmmpy.LmmError, match="negative values are not allowed for the 'Poisson'"):
        lmmpy.glmer("neg ~ period + (1 | herd)", d2, family="poisson")
    with pytest.raises(lmmpy.LmmError, match="binomial response must be"):
        lmmpy.glmer("size ~ period + (1 | herd)", d, family="binomial")
    with pytest.raises(lmmpy.LmmError, match="lmmpy.lmer"):
        lmmpy.glmer("size ~ period + (1 | herd)", d, family="gaussian")
    with pytest.raises(lmmpy.LmmError, match="predict's type"):
        lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d).predict(type="probability")


def test_user_data_unchanged_and_new_data_predict():
    d = _cbpp()
    before = d.copy()
    fit = lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d)
    pd.testing.assert_frame_equal(d, before)
    new = d.iloc[:3].copy()
    np.testing.assert_allclose(fit.predict(new).to_numpy(), fit.linear_predictor.to_numpy()[:3], rtol=1e-10)
    np.testing.assert_allclose(fit.predict(new, type="response").to_numpy(), fit.fitted.to_numpy()[:3], rtol=1e-10)
    pop = fit.predict(new, re_form="~0").to_numpy()
    np.testing.assert_allclose(pop, (fit.design.X[:3] @ fit.fixef.to_numpy()), rtol=1e-10)
    ci = fit.confint()
    assert list(ci.index) == [".sig01", "(Intercept)", "period2", "period3", "period4"]
    assert np.isclose(fit.icc()["herd"], fit.varcorr.vcov[0] / (fit.varcorr.vcov[0] + np.pi**2 / 3))
    assert "Family: binomial  ( logit )" in str(fit) and "<pre>" in fit._repr_html_()


def test_glmer_anova_is_the_likelihood_ratio_test():
    d = _cbpp()
    m1 = lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d)
    m0 = lmmpy.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", d)
    tab = lmmpy.anova(m0, m1).to_frame()
    assert tab["Df"].iloc[1] == 3
    assert np.isclose(tab["Chisq"].iloc[1], 2 * (m1.loglik - m0.loglik))


def test_gram_refresh_equals_a_new_gram():
    rng = np.random.default_rng(1)
    A = sp.random(12, 20, density=0.4, random_state=3, format="csr")
    for k in (1, 2):
        g = WeightedGram(A, group=k, refreshable=True)
        B = A.copy()
        B.data = rng.uniform(0.5, 2.0, B.data.size)
        V = rng.uniform(0.1, 1.0, 20 // k) if k == 1 else np.stack([np.eye(2) * v for v in rng.uniform(0.1, 1, 10)])
        np.testing.assert_allclose(g.refresh(B.data).values(V), WeightedGram(B, group=k).values(V), rtol=1e-12)


def test_tidy_of_a_glmer_fit():
    fit = lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", _cbpp())
    fixed = lmmpy.tidy(fit)
    np.testing.assert_allclose(fixed["statistic"], fit.zvalues.to_numpy())
    np.testing.assert_allclose(fixed["p.value"], fit.pvalues.to_numpy())
    assert list(lmmpy.tidy(fit, "ran_pars")["term"]) == ["sd__(Intercept)"]
