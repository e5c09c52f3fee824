"""GlmerFit.profile() and confint(method="profile") against lme4's confint(m, method = "profile").

References: tests/reference/glmm_profile/*.json, made by glmm_profile_reference.R there (lme4
1.1-31).  Tolerance 1e-3 relative (and 1e-4 absolute, for limits near 0): lme4's profile
deviance comes from its PIRLS stopped at tolPwrss = 1e-7, whose deviance differs from the
converged one by ~1e-4 near the optimum, and lmmpy's optimum is lower than lme4's by up to
~6e-4 in -2 log L (cbpp), which moves a limit by about that change over the profile's slope
there; the limits agree to ~5e-5 relative in practice."""

import json
from pathlib import Path

import numpy as np
import pytest

import lmmpy
from lmmpy.errors import LmmError

from glmm_refs import load_data

REF = Path(__file__).resolve().parents[1] / "reference" / "glmm_profile"
RTOL, ATOL = 1e-3, 1e-4


def _ref(name):
    return json.loads((REF / f"{name}.json").read_text())


def _check(ci, ref):
    assert list(ci.index) == ref["names"]
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def cbpp_fit():
    cbpp = lmmpy.datasets.load("cbpp")
    return lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")


def test_cbpp_profile_intervals_match_lme4(cbpp_fit):
    ci = cbpp_fit.confint("profile", progress=False)
    _check(ci, _ref("cbpp_logit"))
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    # the profile intervals are not the Wald ones (the sd's is asymmetric about its estimate)
    sd = cbpp_fit.theta[0]
    assert ci.iloc[0, 1] - sd > 1.2 * (sd - ci.iloc[0, 0])


def test_cbpp_profile_zeta(cbpp_fit):
    """zeta at the ends of the 95% intervals is -/+ qnorm(0.975), zero at the estimates, and
    increasing across each profile; the names follow old_names."""
    prof = cbpp_fit.profile(level=0.95, n=5, old_names=False, progress=False)
    assert list(prof[".par"].unique()) == ["sd_(Intercept)|herd", "(Intercept)", "period2", "period3", "period4"]
    for _, grp in prof.groupby(".par", sort=False):
        z = grp["zeta"].to_numpy()
        np.testing.assert_allclose(z[[0, -1]], [-1.959964, 1.959964], atol=1e-4)
        assert np.all(np.diff(z) > 0)
    ci = cbpp_fit.confint("profile", level=0.95, old_names=False, progress=False)
    first = prof[prof[".par"] == "period2"]["value"].to_numpy()
    np.testing.assert_allclose(first[[0, -1]], ci.loc["period2"].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_poisson_profile_intervals_match_lme4():
    gt = lmmpy.datasets.load("grouseticks")
    fit = lmmpy.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", gt, family="poisson")
    ci = fit.confint("profile", progress=False)
    _check(ci, _ref("grouseticks_poisson_brood_location"))
    assert ci.loc[".sig02"].iloc[0] == 0.0  # the profile reaches the bound inside the level, as lme4's


def test_random_slope_profile_intervals_match_lme4():
    """A correlated random slope: the sd, cor, sd of the term profiled on lme4's scale."""
    fit = lmmpy.glmer("cbind(succ, n - succ) ~ x + (x | g)", load_data("binomial_slope"), family="binomial")
    _check(fit.confint("profile", progress=False), _ref("binomial_slope_cbind"))


@pytest.mark.filterwarnings("ignore:boundary")  # the fit is singular, as lme4's (what is tested)
def test_singular_fit_profile_intervals_match_lme4():
    """theta = 0 at the optimum: the sd's interval starts at its bound, and the fixed effects'
    inner problems must move the sd off 0 (failed before: intervals 1% narrow)."""
    fit = lmmpy.glmer("y ~ x + (1 | g)", load_data("singular_binary"), family="binomial")
    assert fit.theta[0] == 0.0
    ci = fit.confint("profile", progress=False)
    _check(ci, _ref("singular_binary"))
    assert ci.iloc[0, 0] == 0.0


def test_agq_profile_intervals_match_lme4():
    cbpp = lmmpy.datasets.load("cbpp")
    fit = lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, nAGQ=25)
    _check(fit.confint("profile", progress=False), _ref("cbpp_agq25"))


def test_profile_refuses_what_it_does_not_do(cbpp_fit):
    with pytest.raises(LmmError, match="'wald', 'profile' or 'boot'"):
        cbpp_fit.confint("bca")
    with pytest.raises(LmmError, match="level"):
        cbpp_fit.confint("profile", level=1.5)
    cbpp = lmmpy.datasets.load("cbpp")
    nagq0 = lmmpy.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, nAGQ=0)
    with pytest.raises(LmmError, match="nAGQ"):
        nagq0.confint("profile")
    gamma = lmmpy.glmer(
        "y ~ x + (1 | g)",
        load_data("gamma_positive"),
        family=lmmpy.families.Gamma(link="log"),
        control={"check_conv": False},
    )
    with pytest.raises(LmmError, match="dispersion"):
        gamma.profile()
