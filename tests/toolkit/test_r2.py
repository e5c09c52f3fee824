"""lmmpy.r2_nakagawa against performance 0.10.2 / insight 0.19.0 (tests/reference/toolkit/):
lmer fits (random intercepts, random slopes, two grouping factors, an ML fit, uncorrelated
terms), and the GLMM pieces -- the distribution-specific variance of (family, link) and the R²
formula -- on the variances R computed for glmer fits, so that they are tested without
lmmpy.glmer.

Tolerances: R² 1e-4 absolute, the variances 1e-3 relative (the random-slope fits' estimates
agree with lme4's to ~1e-5 relative; the variances are sums of squares of them); the GLMM
formulas from R's own variances 1e-10 relative."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lmmpy
from lmmpy.errors import LmmError
from lmmpy.inference.r2 import R2Nakagawa, distribution_variance

from toolkit_refs import REF, fit_for, load_ref

LMER = sorted(p.stem for p in REF.glob("extra_r2_*.json"))
GLMM = sorted(p.stem for p in REF.glob("extra_glmm_*.json"))


@pytest.mark.parametrize("name", ["sleepstudy_r2", "mlbook2_denomina_sex"])
def test_shared_references(name):
    ref = load_ref(name)
    r2 = lmmpy.r2_nakagawa(fit_for({**ref, "subset": ""}))
    assert abs(r2.marginal - ref["r2_marginal"]) < 1e-4
    assert abs(r2.conditional - ref["r2_conditional"]) < 1e-4


@pytest.mark.parametrize("name", LMER)
def test_lmer_fits_and_their_variances(name):
    ref = load_ref(name)
    r2 = lmmpy.r2_nakagawa(fit_for(ref))
    for got, want in (
        (r2.var_fixed, "var_fixed"),
        (r2.var_random, "var_random"),
        (r2.var_distribution, "var_distribution"),
    ):
        assert got == pytest.approx(ref[want], rel=1e-3), want
    assert abs(r2.marginal - ref["r2_marginal"]) < 1e-4
    assert abs(r2.conditional - ref["r2_conditional"]) < 1e-4


@pytest.mark.parametrize("name", GLMM)
def test_glmm_distribution_variance_and_formula(name):
    ref = load_ref(name)
    vd = distribution_variance(ref["family"], ref["link"], null_intercept=ref.get("null_intercept"))
    assert vd == pytest.approx(ref["var_distribution"], rel=1e-10)
    r2 = R2Nakagawa(ref["var_fixed"], ref["var_random"], vd)
    assert r2.marginal == pytest.approx(ref["r2_marginal"], rel=1e-10)
    assert r2.conditional == pytest.approx(ref["r2_conditional"], rel=1e-10)


def test_distribution_variances_of_the_links():
    assert distribution_variance("binomial", "logit") == pytest.approx(math.pi**2 / 3)
    assert distribution_variance("binomial", "probit") == 1.0
    assert distribution_variance("binomial", "cloglog") == pytest.approx(math.pi**2 / 6)
    assert distribution_variance("poisson", "sqrt") == 0.25
    assert distribution_variance("poisson", "log", null_intercept=0.0) == pytest.approx(math.log(2))
    assert distribution_variance("gaussian", "identity", sigma=3.0) == 9.0
    with pytest.raises(LmmError, match="null model"):
        distribution_variance("poisson", "log")
    assert distribution_variance("Gamma", "log", sigma=0.5) == 0.25  # V(sigma) = sigma^2
    with pytest.raises(LmmError, match="inverse.gaussian"):
        distribution_variance("inverse.gaussian", "1/mu^2")
    with pytest.raises(LmmError, match="Gamma family with the sqrt link"):
        distribution_variance("Gamma", "sqrt")


def test_singular_fit_warns_and_has_no_conditional_r2():
    fit = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", lmmpy.datasets.load("Dyestuff2"))
    with pytest.warns(UserWarning, match="singular"):
        r2 = lmmpy.r2_nakagawa(fit)
    assert abs(r2.marginal) < 1e-12 and math.isnan(r2.conditional)
    assert "NA" in str(r2)


def test_printing_and_frame():
    r2 = lmmpy.r2_nakagawa(lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy")))
    text = str(r2)
    assert f"Conditional R2: {r2.conditional:.3f}" in text and f"Marginal R2: {r2.marginal:.3f}" in text
    frame = r2.to_frame()
    assert np.allclose(frame["R2"].to_numpy(), [r2.conditional, r2.marginal])
    assert "<table" in r2._repr_html_()
