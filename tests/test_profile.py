"""Profile intervals and profiles (lme4's confint(method = "profile") and profile()): their
names.  lme4's values are in tests/reference/inference/profile_lme4.json (made by
lme4_profile_reference.R beside it)."""
import json
import warnings
from pathlib import Path

import pytest

import lmmpy

REF = json.loads((Path(__file__).parent / "reference" / "inference" / "profile_lme4.json").read_text())
PROFILED = [m for m in REF if m != "lme4" and "confint_profile" in REF[m]]


def fit_of(mid):
    r = REF[mid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmmpy.lmer(r["formula"], lmmpy.datasets.load(r["dataset"]), REML=r["REML"])


@pytest.fixture(scope="module")
def fits():
    return {}


def cached(fits, mid):
    if mid not in fits:
        fits[mid] = fit_of(mid)
    return fits[mid]


# -- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mid", [m for m in REF if m != "lme4"])
def test_wald_names_as_lme4(fits, mid):
    """lme4's confint(method = "Wald") names, oldNames = TRUE (its default) and FALSE: a
    correlated term, crossed and nested terms, a 3 x 3 covariance."""
    fit = cached(fits, mid)
    assert list(fit.confint("wald").index) == REF[mid]["wald_names"]
    assert list(fit.confint("wald", old_names=False).index) == REF[mid]["wald_names_new"]


def test_profile_data_names_as_lme4(fits):
    """profile()'s .par names follow the same rule (lme4's profile(fm)$.par, signames = TRUE
    by default)."""
    mid = "penicillin_crossed_reml"
    fit = cached(fits, mid)
    assert list(dict.fromkeys(fit.profile(n=3)[".par"])) == REF[mid]["profile_par"]
    assert list(dict.fromkeys(fit.profile(n=3, old_names=False)[".par"])) == REF[mid]["profile_par_new"]


def test_bootstrap_names_as_lme4(fits):
    mid = "sleepstudy_slopes_reml"
    fit = cached(fits, mid)
    assert list(fit.confint("boot", nsim=4, seed=1).index) == REF[mid]["boot_names"]
    assert list(fit.confint("boot", nsim=4, seed=1, old_names=False).index) == REF[mid]["profile_names_new"]
