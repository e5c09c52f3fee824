"""The statsmodels bridge: translations, both fits side by side, and refusals."""

import numpy as np
import pytest

import lmmpy
from lmmpy.compare import translate


@pytest.fixture(scope="module")
def sleep():
    return lmmpy.datasets.load("sleepstudy")


def test_sleepstudy_side_by_side(sleep):
    c = lmmpy.compare.statsmodels("Reaction ~ Days + (Days | Subject)", sleep)
    assert (c.translation.re_formula, c.translation.vc_formula) == ("Days", {})
    t = c.table
    assert t.loc["Days", "statsmodels"] == pytest.approx(10.467286, abs=1e-5)
    # both at lme4's optimum: criteria agree, and so do the variance components
    assert abs(c.criterion_statsmodels - c.criterion_lmmpy) < 1e-4
    assert abs(c.criterion_at_statsmodels - c.criterion_statsmodels) < 1e-6  # one scale
    assert t.loc["var Subject (Intercept)", "difference"] == pytest.approx(0, abs=0.05)
    assert not c.worse_optimum
    assert "Subject" in str(c)


def test_statsmodels_stops_at_a_worse_optimum_on_the_snijders_bosker_slope_model():
    """The issue's example: MixedLM's ML deviance 24934 against lme4's 24865."""
    fit = lmmpy.lmer("langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)", lmmpy.datasets.load("mlbook2"), REML=False)
    c = lmmpy.compare.compare_fit(fit)
    assert round(c.criterion_lmmpy, 1) == 24864.9  # lme4: 24864.87
    assert c.criterion_statsmodels > c.criterion_lmmpy + 10
    assert c.worse_optimum and "worse optimum" in str(c)


def test_crossed_and_nested_and_independent_terms(sleep):
    pen = lmmpy.datasets.load("Penicillin")
    c = lmmpy.compare.statsmodels("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    assert c.translation.groups == "__one__" and set(c.translation.vc_formula) == {"plate", "sample"}
    assert abs(c.criterion_statsmodels - c.criterion_lmmpy) < 1e-4
    c = lmmpy.compare.statsmodels("strength ~ 1 + (1 | batch/cask)", lmmpy.datasets.load("Pastes"))
    assert c.translation.groups.strip("_") == "batch"
    np.testing.assert_allclose(
        c.table.loc[["var cask:batch (Intercept)", "var batch (Intercept)"], "statsmodels"],
        c.table.loc[["var cask:batch (Intercept)", "var batch (Intercept)"], "lmmpy"],
        rtol=1e-3,
    )
    c = lmmpy.compare.statsmodels("Reaction ~ Days + (Days || Subject)", sleep)
    assert c.translation.re_formula == "1" and c.translation.vc_formula == {"Days": "0 + Days"}
    assert abs(c.criterion_statsmodels - c.criterion_lmmpy) < 1e-4


def test_models_mixedlm_cannot_express_are_refused_with_the_reason():
    pen = lmmpy.datasets.load("Penicillin")
    pen["x"] = np.random.default_rng(1).normal(size=len(pen))
    fit = lmmpy.lmer("diameter ~ x + (x | plate) + (1 | sample)", pen)
    with pytest.raises(lmmpy.LmmError, match="crossed grouping factors with random slopes"):
        translate(fit)
    fit = lmmpy.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    with pytest.raises(lmmpy.LmmError, match="dense columns"):
        translate(fit, max_crossed_columns=10)
