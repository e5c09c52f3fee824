"""The toolkit on glmer fits, end to end: emmeans on the response scale and Nakagawa's R2 of
lmmpy.glmer fits against R's emmeans and performance on the same models (cbpp).

References: tests/reference/toolkit/glmer/ (made by toolkit_extra.R there, lme4 1.1-31,
emmeans 1.8.4-1, performance 0.10.2).  lmmpy's cbpp optimum has -2 log L 5.7e-4 below lme4's,
its fixed effects 1e-4 to 5e-4 relative from lme4's, so the probabilities are held to 2e-3
relative against R and, exactly, to the back-transformed fixed effects of lmmpy's own fit;
standard errors to 1e-2 (lme4's SEs come from its own finite-difference Hessian)."""

import ast
import json
import pathlib

import numpy as np
import pytest

import lmmpy

REF = pathlib.Path(__file__).parent.parent / "reference" / "toolkit" / "glmer"


def _ref(name):
    ref = json.loads((REF / f"{name}.json").read_text())
    for key in ("emmeans", "pairs"):
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
