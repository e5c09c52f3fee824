"""Profile intervals and profiles (lme4's confint(method = "profile") and profile()): their
names, their numbers on more models, the cost of computing them, and the progress line of the
long computations (profiles, the bootstrap).  lme4's values are in
tests/reference/inference/profile_lme4.json (made by lme4_profile_reference.R beside it)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.deviance import LmmModel
from lmmpy.inference import parameters, progress as progress_line
from lmmpy.inference import profile as prof

REF = json.loads((Path(__file__).parents[1] / "reference" / "inference" / "profile_lme4.json").read_text())
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


@pytest.mark.parametrize("mid", PROFILED)
def test_profile_names_and_intervals_as_lme4(fits, mid):
    """Rows named as lme4's confint(method = "profile") names them (.sig01, ... by default,
    sd_/cor_ with old_names=False), the same intervals either way, every end within 1e-3
    relative of lme4's (lme4 interpolates a spline through its profile; seen: <= 1e-4) or, at a
    bound, equal to it."""
    fit = cached(fits, mid)
    ci = fit.confint("profile")
    assert list(ci.index) == REF[mid]["profile_names"]
    ref = REF[mid]["confint_profile"]
    for ours, lo, hi in zip(ci.to_numpy(), ref["lower"], ref["upper"]):
        assert ours == pytest.approx([lo, hi], rel=1e-3, abs=1e-12)
    ci_new = fit.confint("profile", old_names=False)
    assert list(ci_new.index) == REF[mid]["profile_names_new"]
    np.testing.assert_allclose(ci_new.to_numpy(), ci.to_numpy(), rtol=1e-12)


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


# -- cost ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mid, dataset, formula, REML, most",
    [
        ("sleepstudy_slopes_reml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", True, 1500),
        ("mlbook2_slope_ml", "mlbook2", "langPOST ~ IQ_verb + sch_iqv + (IQ_verb | schoolnr)", False, 1500),
    ],
)
def test_profile_intervals_take_few_evaluations(monkeypatch, mid, dataset, formula, REML, most):
    """The profile intervals of the issue's two models take at most 1,500 factorisations of the
    model (seen: about 800 and 700; warm-started inner minimisations with the analytic gradient
    and lme4's steps), where minimising from scratch without derivatives took about 100,000."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(formula, lmmpy.datasets.load(dataset), REML=REML)
    count = {"n": 0}
    update = LmmModel.update

    def counting(self):
        count["n"] += 1
        return update(self)

    monkeypatch.setattr(LmmModel, "update", counting)
    fit.confint("profile", progress=False)
    assert 0 < count["n"] <= most


# -- the inner problems -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, dataset",
    [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("langPOST ~ IQ_verb + ses + (IQ_verb + ses | schoolnr)", "mlbook2"),
    ],
)
def test_inner_gradients_are_the_derivatives(formula, dataset):
    """Each parameter's inner criterion (the deviance with that parameter held) has the gradient
    its minimiser is given: central differences agree to 1e-5 relative, away from the optimum,
    for standard deviations, correlations (2 x 2 and 3 x 3), sigma and a fixed effect."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(formula, lmmpy.datasets.load(dataset), REML=False)
    rng = np.random.default_rng(1)
    for slc in prof._slices(fit, 0.5):
        v = slc.hat + 3 * slc.first_step
        x = slc.x_hat + 0.01 * rng.standard_normal(slc.x_hat.size)
        bounds = slc.bounds(v)
        x = np.array(
            [
                min(max(xi, -np.inf if lo is None else lo), np.inf if hi is None else hi)
                for xi, (lo, hi) in zip(x, bounds)
            ]
        )
        _, g = slc.fg(x, v)
        for i, (lo, hi) in enumerate(bounds):
            if lo is not None and lo == hi:
                continue  # held
            h = 1e-6 * max(1.0, abs(x[i]))
            up, down = x.copy(), x.copy()
            up[i] += h
            down[i] -= h
            fd = (slc.fg(up, v)[0] - slc.fg(down, v)[0]) / (2 * h)
            assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-3), (slc.name, i)


def test_three_by_three_covariance_on_its_edge():
    """A rank-deficient 3 x 3 covariance (lme4 1.1-31 stops: "profiling detected new, lower
    deviance"): every interval is finite, holds its estimate, and its correlations' ends stay in
    [-1, 1]; no warning."""
    fit = fit_of("mlbook2_three_slopes_ml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = fit.confint("profile", old_names=False, progress=False)
    est = parameters.parameter_vector(fit)
    assert np.all(np.isfinite(ci.to_numpy()))
    assert np.all((ci.iloc[:, 0] <= est) & (est <= ci.iloc[:, 1]))
    cors = ci.loc[[n for n in ci.index if n.startswith("cor_")]]
    assert np.all((cors >= -1) & (cors <= 1))


def test_profile_leaves_the_fit_at_its_optimum():
    fit = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", lmmpy.datasets.load("Dyestuff"), REML=False)
    before = fit.model.L.pwrss
    fit.confint("profile")
    assert np.array_equal(fit.model.theta, fit.theta) and fit.model.L.pwrss == before


# -- progress -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dyestuff():
    return lmmpy.lmer("Yield ~ 1 + (1 | Batch)", lmmpy.datasets.load("Dyestuff"))


def test_profile_progress_forced_on(dyestuff, capsys):
    """One line on stderr, rewritten in place (carriage returns), ended by a newline."""
    dyestuff.confint("profile", progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("\rprofile: ") and out.err.endswith("\n") and out.err.count("\n") == 1
    assert "3/3 parameters" in out.err
    dyestuff.profile(n=3, progress=True)
    assert "3/3 parameters" in capsys.readouterr().err


def test_bootstrap_progress_forced_on(dyestuff, capsys):
    dyestuff.confint("boot", nsim=30, seed=1, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rbootstrap: ") and "30/30 refits" in err and err.endswith("\n")


def test_small_fits_print_nothing_by_default(dyestuff, capsys):
    dyestuff.confint("profile")
    dyestuff.profile(n=3)
    dyestuff.confint("boot", nsim=30, seed=1)
    dyestuff.confint("profile", progress=False)
    assert capsys.readouterr() == ("", "")


def test_progress_turns_on_when_the_work_will_take_long(dyestuff, capsys, monkeypatch):
    """The default: on as soon as the time taken so far projects a total over the threshold
    (here 0 s, so from the first step on)."""
    monkeypatch.setattr(progress_line, "PROGRESS_SECONDS", 0.0)
    dyestuff.confint("profile")
    assert "profile: " in capsys.readouterr().err
    dyestuff.confint("boot", nsim=30, seed=1)
    assert "bootstrap: " in capsys.readouterr().err


@pytest.mark.parametrize("c", [1e8, 1e-8])
def test_profile_does_not_depend_on_the_columns_units(c):
    """Days * c: at the correspondingly mapped theta (T's Days row / c) the intervals are the
    unscaled ones mapped (sd_Days and the Days coefficient / c), to 1e-6: the inner problems'
    steps and scales come from the parameters' own sizes."""
    d = lmmpy.datasets.load("sleepstudy")
    base = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, REML=False)
    dc = d.assign(Days=d["Days"] * c)
    theta = base.theta.copy()
    theta[1:] /= c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a theta this small reads as singular (lme4's 1e-4 on theta)
        fit = lmmpy.lmer(
            "Reaction ~ Days + (Days | Subject)",
            dc,
            REML=False,
            start=theta,
            optimizer=None,
            control={"check_conv": False},
        )
    ratio = np.array([1, 1, 1 / c, 1, 1, 1 / c])[:, None]
    np.testing.assert_allclose(fit.confint("profile").to_numpy() / ratio, base.confint("profile").to_numpy(), rtol=1e-6)
