"""The toolkit on glmer fits, end to end: emmeans on the response scale (means, and contrasts
as odds ratios / rate ratios) and Nakagawa's R2 of lmmpy.glmer fits against R's emmeans and
performance on the same models (cbpp logit and probit, grouseticks Poisson, a Poisson model
with an offset, a binary probit model).

References: tests/reference/toolkit/glmer/ (made by toolkit_extra.R there, lme4 1.1-31,
emmeans 1.8.4-1, performance 0.10.2, insight 0.19.0).  Two kinds of test:

- at lme4's estimates (glmm_refs.at_lme4: lmmpy's model evaluated at lme4's theta and beta,
  tests/reference/glmm/): what emmeans and performance compute from a fit is then compared
  alone.  Ratios 1e-5 relative (they are exp of lme4's estimates, stored to 15 digits: the
  observed error is 1e-14), SEs 1e-3 relative (lme4's finite-difference Hessian against
  lmmpy's reproduction of it: observed 3e-6), p values 1e-3 absolute (observed 2e-7); R2 and
  its variances, given R's null-model intercept, 1e-8 (observed 4e-15);
- from lmmpy's own optimum: lmmpy's cbpp optimum has -2 log L 5.7e-4 below lme4's, its fixed
  effects 1e-4 to 5e-4 relative from lme4's, so the probabilities and ratios are held to 2e-3
  relative against R and, exactly, to the back-transformed fixed effects of lmmpy's own fit;
  standard errors to 1e-2 (lme4's SEs come from its own finite-difference Hessian).
"""

import ast
import json
import math
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
from glmm_refs import REF as GLMM_REF
from glmm_refs import at_lme4, fitted

import lmmpy
from lmmpy.errors import LmmError
from lmmpy.inference.r2 import null_model_intercept

REF = pathlib.Path(__file__).parent.parent / "reference" / "toolkit" / "glmer"


def _ref(name):
    ref = json.loads((REF / f"{name}.json").read_text())
    for key in ("emmeans", "pairs", "pairs_adjusted"):
        if isinstance(ref.get(key), str):
            ref[key] = ast.literal_eval(ref[key])
    return ref


@pytest.fixture(scope="module")
def cbpp():
    d = lmmpy.datasets.load("cbpp")
    for c in ("herd", "period"):
        d[c] = d[c].astype(str).astype("category")
    return d


def test_emmeans_of_a_glmer_fit_on_the_response_scale_match_emmeans(cbpp):
    ref = _ref("cbpp_period_response")
    fit = lmmpy.glmer(ref["formula"], cbpp, family="binomial")
    emm = lmmpy.emmeans(fit, "period", type="response").to_frame()
    beta = fit.fixef.to_numpy()
    own = 1 / (1 + np.exp(-(beta[0] + np.r_[0.0, beta[1:]])))  # period 1 is the intercept
    np.testing.assert_allclose(emm["prob"], own, rtol=1e-12)
    np.testing.assert_allclose(emm["prob"], ref["emmeans"]["prob"], rtol=2e-3)
    np.testing.assert_allclose(emm["SE"], ref["emmeans"]["SE"], rtol=1e-2)
    np.testing.assert_allclose(emm["asymp.LCL"], ref["emmeans"]["asymp.LCL"], rtol=1e-3)
    assert np.isinf(emm["df"]).all()


def test_r2_nakagawa_of_a_probit_glmer_fit_matches_performance(cbpp):
    ref = _ref("cbpp_probit_r2")
    fit = lmmpy.glmer(ref["formula"], cbpp, family=lmmpy.families.binomial(link="probit"))
    r2 = lmmpy.r2_nakagawa(fit)
    assert r2.marginal == pytest.approx(ref["r2_marginal"], rel=1e-3)
    assert r2.conditional == pytest.approx(ref["r2_conditional"], rel=1e-3)


# -- contrasts on the response scale: odds ratios (logit) and rate ratios (log) ---------------
RATIO_CASES = [
    # (emmeans reference, lme4 reference fit of the same model, emmeans' ratio column)
    ("cbpp_period_response", "cbpp_binomial_laplace", "odds.ratio"),
    ("grouseticks_year_response_r2", "grouseticks_poisson_crossed", "ratio"),
]


@pytest.mark.parametrize("name, lme4_fit, column", RATIO_CASES)
def test_pairs_on_the_response_scale_are_ratios_as_emmeans_gives_them(name, lme4_fit, column):
    ref = _ref(name)
    pairs = lmmpy.emmeans(at_lme4(lme4_fit), ref["specs"], type="response").pairs()
    got, want = pairs.to_frame(), ref["pairs"]
    assert list(got.columns) == ["contrast", column, "SE", "df", "null", "z.ratio", "p.value"]
    assert list(got["contrast"]) == want["contrast"]
    np.testing.assert_allclose(got[column], want[column], rtol=1e-5)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=1e-3)
    np.testing.assert_allclose(got["z.ratio"], want["z.ratio"], rtol=1e-3)
    np.testing.assert_allclose(got["p.value"], want["p.value"], atol=1e-3)
    assert (got["null"] == 1).all() and np.isinf(got["df"]).all()
    # printed as emmeans prints it, with its footnote on the scale of the tests
    assert str(pairs) == ref["pairs_text"] + "\n"


def test_holm_adjusted_odds_ratios_match_emmeans():
    ref = _ref("cbpp_period_response")
    pairs = lmmpy.emmeans(at_lme4("cbpp_binomial_laplace"), "period", type="response").pairs(adjust="holm")
    want = ref["pairs_adjusted"]["holm"]
    np.testing.assert_allclose(pairs.to_frame()["p.value"], want["p.value"], atol=1e-3)
    assert str(pairs) == ref["pairs_adjusted_text"]["holm"] + "\n"


CONTRASTS = {
    "eff": lambda e: e.contrast("eff"),
    "trt_vs_ctrl_none": lambda e: e.contrast("trt.vs.ctrl", adjust="none"),
    "revpairwise_none": lambda e: e.pairs(reverse=True, adjust="none"),
    "not_zero_sum": lambda e: e.contrast({"twice1": [2, 0, 0, 0]}),
    "mixed": lambda e: e.contrast({"c1": [1, -1, 0, 0], "c2": [2, 0, 0, 0]}),
}


@pytest.mark.parametrize("case", list(CONTRASTS))
def test_other_contrasts_of_response_means_as_emmeans_gives_them(case):
    """Contrasts whose coefficients sum to zero (effects, against a control, reversed pairs)
    become odds ratios; a set with any other contrast stays on the logit scale, with emmeans'
    note (cbpp_response_contrasts.json, response_contrasts.R).  Tolerances as above."""
    ref = json.loads((REF / "cbpp_response_contrasts.json").read_text())[case]
    emm = lmmpy.emmeans(at_lme4("cbpp_binomial_laplace"), "period", type="response")
    got = CONTRASTS[case](emm)
    frame, want = got.to_frame(), ref["table"]
    column = "odds.ratio" if "odds.ratio" in want else "estimate"
    assert column in frame and list(frame["contrast"]) == want["contrast"]
    np.testing.assert_allclose(frame[column], want[column], rtol=1e-5)
    np.testing.assert_allclose(frame["SE"], want["SE"], rtol=1e-3)
    np.testing.assert_allclose(frame["p.value"], want["p.value"], atol=1e-3)
    assert str(got) == ref["text"] + "\n"


def test_odds_ratios_of_lmmpys_own_fit(cbpp):
    ref = _ref("cbpp_period_response")
    fit = lmmpy.glmer(ref["formula"], cbpp, family="binomial")
    got = lmmpy.emmeans(fit, "period", type="response").pairs().to_frame()
    beta = fit.fixef.to_numpy()
    eta = beta[0] + np.r_[0.0, beta[1:]]
    own = [math.exp(eta[i] - eta[j]) for i in range(4) for j in range(i + 1, 4)]
    np.testing.assert_allclose(got["odds.ratio"], own, rtol=1e-12)
    np.testing.assert_allclose(got["odds.ratio"], ref["pairs"]["odds.ratio"], rtol=2e-3)
    np.testing.assert_allclose(got["SE"], ref["pairs"]["SE"], rtol=1e-2)
    np.testing.assert_allclose(got["p.value"], ref["pairs"]["p.value"], atol=1e-3)


def test_link_scale_pairs_and_non_zero_sum_contrasts_stay_differences():
    emm = lmmpy.emmeans(at_lme4("cbpp_binomial_laplace"), "period", type="response")
    link = lmmpy.emmeans(at_lme4("cbpp_binomial_laplace"), "period").pairs().to_frame()
    ratio = emm.pairs().to_frame()
    np.testing.assert_allclose(np.log(ratio["odds.ratio"]), link["estimate"], rtol=1e-12)
    np.testing.assert_allclose(ratio["SE"], ratio["odds.ratio"] * link["SE"], rtol=1e-12)  # the delta method
    assert list(link["contrast"])[0] == "period1 - period2" and "null" not in link
    custom = emm.contrast({"twice period1": [2, 0, 0, 0]})  # not a contrast of means: no ratio
    frame = custom.to_frame()
    assert "estimate" in frame and "odds.ratio" not in frame
    assert "Note: contrasts are still on the logit scale" in str(custom)


def test_probit_pairs_stay_on_the_probit_scale_as_emmeans_leaves_them():
    ref = _ref("string_response_probit_r2")
    d = pd.read_csv(GLMM_REF / "data" / "string_response.csv")
    d["clinic"] = d["clinic"].astype("category")
    fit = lmmpy.glmer(ref["formula"], d, family=lmmpy.families.binomial(link="probit"))
    emm = lmmpy.emmeans(fit, "treatment", type="response")
    np.testing.assert_allclose(emm.to_frame()["prob"], ref["emmeans"]["prob"], rtol=2e-3)
    pairs = emm.pairs()
    got = pairs.to_frame()
    assert list(got.columns) == ["contrast", "estimate", "SE", "df", "z.ratio", "p.value"]
    np.testing.assert_allclose(got["estimate"], ref["pairs"]["estimate"], rtol=2e-3)
    assert str(pairs).splitlines()[-1].strip() == "Note: contrasts are still on the probit scale"
    r2 = lmmpy.r2_nakagawa(fit)  # probit: distribution variance 1
    assert abs(r2.marginal - ref["r2_marginal"]) < 1e-3
    assert abs(r2.conditional - ref["r2_conditional"]) < 1e-3


# -- Nakagawa's R2 of Poisson fits: the null model refitted --------------------------------
def test_poisson_r2_and_its_variances_given_rs_null_model():
    """At lme4's estimates and with R's null intercept, the R2 formula alone: INDEX (one level
    per observation) counts as overdispersion, var.residual = log(1 + 1/mu) + its variance."""
    ref = _ref("grouseticks_year_response_r2")
    v = ref["variance"]
    with pytest.warns(UserWarning, match="mu of 1.5"):  # performance's warning, as R gave it
        r2 = lmmpy.r2_nakagawa(
            at_lme4("grouseticks_poisson_crossed"), null_intercept=ref["null_model"]["fixef"]["(Intercept)"]
        )
    assert r2.var_fixed == pytest.approx(v["var.fixed"], rel=1e-8)
    assert r2.var_random == pytest.approx(v["var.random"], rel=1e-8)
    assert r2.var_distribution == pytest.approx(v["var.residual"], rel=1e-8)
    assert r2.marginal == pytest.approx(ref["r2_marginal"], abs=1e-8)
    assert r2.conditional == pytest.approx(ref["r2_conditional"], abs=1e-8)


def test_poisson_r2_refits_a_null_model_at_least_as_good_as_lme4s():
    """lme4's null model of grouseticks stops early (its own warning: max|grad| 0.083): lmmpy's
    refit reaches -2 log L 0.009 lower, at an intercept 0.012 higher (0.4342 vs 0.4219).  The
    R2 then differ from R's by that alone: marginal 7e-4, conditional 1.1e-3 (the derivative
    of log(1 + 1/mu) is -1/(1 + mu) = -0.40 per unit of intercept, times the 0.012); so the
    end-to-end tolerance is 1.5e-3 here, and 1e-3 for the simpler model below, where the null
    models agree better (R2 differences 3e-4)."""
    ref = _ref("grouseticks_year_response_r2")
    fit, _ = fitted("grouseticks_poisson_crossed")
    with pytest.warns(UserWarning, match="mu of 1.5 is too close to zero"):
        r2 = lmmpy.r2_nakagawa(fit)
    assert abs(r2.marginal - ref["r2_marginal"]) < 1.5e-3
    assert abs(r2.conditional - ref["r2_conditional"]) < 1.5e-3
    null = ref["null_model"]
    beta0 = null_model_intercept(fit)
    assert abs(beta0 - null["fixef"]["(Intercept)"]) < 0.02
    # the null model's deviance: lmmpy's optimum against lme4's estimates, on lmmpy's deviance
    d = lmmpy.datasets.load("grouseticks")
    for c in ("BROOD", "INDEX", "LOCATION"):
        d[c] = d[c].astype(str).astype("category")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = lmmpy.glmer(null["formula"], d, family="poisson")
    model = lmmpy.mk_glmer_devfun(own.design, "poisson")
    at_r = lmmpy.optimize_glmer(model, at=(null["theta"], [null["fixef"]["(Intercept)"]]))
    assert at_r.fmin == pytest.approx(null["deviance_minus2loglik"], abs=1e-4)  # the same deviance function
    assert -2 * own.loglik < at_r.fmin
    assert own.fixef.iloc[0] == pytest.approx(beta0, abs=1e-6)


def test_poisson_r2_of_a_simpler_model_refits_the_null_model():
    """grouseticks without INDEX: tests/reference/toolkit/extra_glmm_grouse_poisson.json."""
    ref = json.loads((REF.parent / "extra_glmm_grouse_poisson.json").read_text())
    d = lmmpy.datasets.load("grouseticks")
    for c in ("YEAR", "BROOD", "LOCATION"):
        d[c] = d[c].astype(str).astype("category")
    fit = lmmpy.glmer(ref["formula"], d, family="poisson")
    with pytest.warns(UserWarning, match="mu of 1.7"):
        r2 = lmmpy.r2_nakagawa(fit)
    assert abs(r2.marginal - ref["r2_marginal"]) < 1e-3
    assert abs(r2.conditional - ref["r2_conditional"]) < 1e-3
    assert r2.var_fixed == pytest.approx(ref["var_fixed"], rel=1e-3)
    assert r2.var_random == pytest.approx(ref["var_random"], rel=1e-3)


@pytest.mark.parametrize("lme4_fit", ["exposure_poisson_offset", "exposure_poisson_offset_term"])
def test_poisson_r2_keeps_the_offset_in_the_null_model(lme4_fit):
    """The offset as offset= or as offset(log(exposure)) in the formula: insight's null model
    keeps it either way (its intercept -0.977 is a log rate per unit exposure; without the
    offset it would be log(mean count) = 1.34).  The fit and the null fit agree with lme4's to
    ~2e-5, so R2 to 1e-5."""
    ref = _ref("exposure_poisson_offset_r2")
    fit, _ = fitted(lme4_fit)
    assert null_model_intercept(fit) == pytest.approx(ref["null_model"]["fixef"]["(Intercept)"], abs=1e-4)
    with pytest.warns(UserWarning, match="mu of 0.4"):
        r2 = lmmpy.r2_nakagawa(fit)
    assert abs(r2.marginal - ref["r2_marginal"]) < 1e-5
    assert abs(r2.conditional - ref["r2_conditional"]) < 1e-5
    assert r2.var_distribution == pytest.approx(ref["variance"]["var.distribution"], rel=1e-4)


@pytest.mark.parametrize("link", ["log", "inverse"])
def test_gamma_r2_uses_sigma_squared_as_performance_does(link):
    """Gamma GLMMs (gamma_r2.json, gamma_r2.R): s2_d = sigma^2.  At lme4's estimates (log
    link, tests/reference/glmm/gamma_log_positive.json) R2 and the variances to 1e-6 (sigma
    from the same pwrss); from lmmpy's own fits, whose -2 log L is within 4e-4 of lme4's and
    sigma within 4e-4 relative, R2 to 1e-3."""
    ref = json.loads((REF / "gamma_r2.json").read_text())[link]
    d = pd.read_csv(GLMM_REF / "data" / "gamma_positive.csv")
    d["g"] = d["g"].astype("category")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.glmer(ref["formula"], d, family=lmmpy.families.Gamma(link=link))
    r2 = lmmpy.r2_nakagawa(fit)
    assert abs(r2.marginal - ref["r2_marginal"]) < 1e-3
    assert abs(r2.conditional - ref["r2_conditional"]) < 1e-3
    if link == "log":
        at = lmmpy.r2_nakagawa(at_lme4("gamma_log_positive"))
        v = ref["variance"]
        assert at.var_distribution == pytest.approx(v["var.distribution"], rel=1e-6)
        assert at.var_fixed == pytest.approx(v["var.fixed"], rel=1e-6)
        assert at.var_random == pytest.approx(v["var.random"], rel=1e-6)
        assert at.marginal == pytest.approx(ref["r2_marginal"], abs=1e-6)
        assert at.conditional == pytest.approx(ref["r2_conditional"], abs=1e-6)


def test_r2_of_an_unsupported_family_says_so():
    d = pd.read_csv(GLMM_REF / "data" / "gamma_positive.csv")
    d["g"] = d["g"].astype("category")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.glmer("y ~ x + (1 | g)", d, family=lmmpy.families.inverse_gaussian(link="log"))
    with pytest.raises(LmmError, match="does not support the inverse.gaussian family"):
        lmmpy.r2_nakagawa(fit)
