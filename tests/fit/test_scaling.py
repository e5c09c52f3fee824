"""Issue 12: a badly scaled covariate (sleepstudy's Days * 1e8 or * 1e-8) is fitted on
internally rescaled columns and reported on the user's scale (lmmpy/fit/scaling.py).

References (tests/reference/scaling/, made by make_refs.R there): lme4's fit of the model on
the unscaled data, transformed to the rescaled covariate by the maps in lmmpy.fit.scaling's
docstring (k the factor: the Days fixed effect / k, its variance / k^2, its covariance with
the intercept / k, theta's Days row / k, the REML criterion + 2 log k); and what lme4 does on
the rescaled data: an error ("Downdated VtV is not positive definite") for 1e8, a stop at
1749.62 with warnings for 1e-8, against the attainable 1780.4696 / 1706.7869 (lme4's own
criterion at the mapped theta) and lme4's printed summary there.

Tolerances: lmmpy's unscaled optimum differs from lme4's by ~1e-9 in the criterion and
~1e-5 relative in theta (its fitted values up to 7.6e-7 relative, 1.6e-4 absolute), so
against lme4's optimum: criterion 1e-6 (lower is allowed: a better optimum), fixed effects
1e-6 relative, fitted values and predictions 2e-6 relative, residuals 1e-5 sigma,
(co)variances, standard errors, conditional modes and their SDs 1e-4 relative; at lme4's
theta (optimizer=None) the algebra alone: 1e-9.  Against lmmpy's own unscaled fit, transformed: 1e-5 relative (two
optimizer runs from different starts).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmpy

REF = Path(__file__).parents[1] / "reference" / "scaling"
UNSCALED = json.loads((REF / "unscaled.json").read_text())
RESCALED = json.loads((REF / "rescaled.json").read_text())
SLOPE_ONLY = json.loads((REF / "slope_only.json").read_text())
FORMULA = "Reaction ~ Days + (Days | Subject)"
FACTORS = {"1e+08": 1e8, "1e-08": 1e-8}
WARNED = {}  # factor -> the warnings its fit raised (the fixture's)


def scaled_data(k):
    d = lmmpy.datasets.load("sleepstudy")
    d["Days"] = d["Days"] * k  # a new column: the bundled frame is left as it is
    return d


def mapped_theta(theta, k):
    """lme4's theta for Days -> theta for Days * k: the template's Days row / k."""
    th = np.array(theta, dtype=float)
    th[1:] /= k
    return th


@pytest.fixture(scope="module", params=list(FACTORS))
def case(request):
    """(key, k, data, fit) for one factor, and the warnings the fit raised."""
    key = request.param
    k = FACTORS[key]
    d = scaled_data(k)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmmpy.lmer(FORMULA, d)
    WARNED[key] = [f"{w.category.__name__}: {w.message}" for w in caught]
    return key, k, d, fit


def test_fit_warns_nothing_and_leaves_the_data_alone(case):
    """No numpy RuntimeWarning (main: six, from finite differences across an infinite
    criterion), no ConvergenceWarning; the user's frame is not modified."""
    key, k, d, _ = case
    assert WARNED[key] == []
    pd.testing.assert_frame_equal(d, scaled_data(k))


@pytest.fixture(scope="module")
def unscaled_fit():
    return lmmpy.lmer(FORMULA, lmmpy.datasets.load("sleepstudy"))


def test_reaches_the_attainable_criterion(case):
    """1780.4696 for 1e8 (main: 2438.32, labelled OK; lme4: error), 1706.7869 for 1e-8 (main and
    lme4: 1749.62): lme4's unscaled criterion + 2 log k."""
    key, k, _, fit = case
    target = RESCALED[key]["attainable_criterion"]
    assert target == pytest.approx(UNSCALED["criterion"] + 2 * np.log(k), abs=1e-8)
    assert fit.objective <= target + 1e-6
    assert fit.objective == pytest.approx(target, abs=1e-6)
    assert fit.optsum.converged and fit.optsum.messages == []
    assert not fit.is_singular  # theta for Days is 2e-9 (1e8), yet not on its bound
    assert any("rescaled columns" in n for n in fit.optsum.notes)


def test_ml_deviance_has_no_jacobian_term():
    """ML: the deviance itself is invariant under column scaling (lme4's unscaled ML fit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # main warns: the numbers are what is tested
        fit = lmmpy.lmer(FORMULA, scaled_data(1e8), REML=False)
    assert fit.objective == pytest.approx(UNSCALED["ml_deviance"], abs=1e-6)
    assert np.allclose(fit.theta, mapped_theta(UNSCALED["ml_theta"], 1e8), rtol=1e-4)


def test_theta_and_fixed_effects_on_the_users_scale(case, unscaled_fit):
    key, k, _, fit = case
    assert np.allclose(fit.theta, mapped_theta(UNSCALED["theta"], k), rtol=1e-4)
    assert np.allclose(fit.theta, mapped_theta(unscaled_fit.theta, k), rtol=1e-5)
    fe = UNSCALED["fixef"]
    assert fit.fixef["(Intercept)"] == pytest.approx(fe["(Intercept)"], rel=1e-6)
    assert fit.fixef["Days"] == pytest.approx(fe["Days"] / k, rel=1e-6)
    D = np.diag([1.0, 1.0 / k])
    assert np.allclose(fit.vcov.to_numpy(), D @ np.array(UNSCALED["vcov_fixef"]) @ D, rtol=1e-4)
    assert np.allclose(fit.vcov.to_numpy(), D @ unscaled_fit.vcov.to_numpy() @ D, rtol=1e-5)
    assert np.allclose(fit.se.to_numpy(), np.sqrt(np.diag(D @ np.array(UNSCALED["vcov_fixef"]) @ D)), rtol=1e-4)
    assert np.allclose(fit.tvalues.to_numpy(), unscaled_fit.tvalues.to_numpy(), rtol=1e-5)


def test_varcorr_on_the_users_scale(case, unscaled_fit):
    """Days' variance / k^2, its sd / k, the covariance / k, the correlation and sigma as they are."""
    key, k, _, fit = case
    power = {("(Intercept)", None): 0, ("Days", None): 2, ("(Intercept)", "Days"): 1}
    variances = {r.var1: r.vcov for r in unscaled_fit.varcorr.itertuples() if not isinstance(r.var2, str)}
    for ours, ref, base in zip(fit.varcorr.itertuples(), UNSCALED["varcorr"], unscaled_fit.varcorr.itertuples()):
        var2 = None if not isinstance(ours.var2, str) else ours.var2
        var1 = None if not isinstance(ours.var1, str) else ours.var1
        assert (ours.grp, var1, var2) == (ref["grp"], ref["var1"], ref["var2"])
        e = power.get((var1, var2), 0)
        assert ours.vcov == pytest.approx(ref["vcov"] / k**e, rel=1e-4)
        # a covariance to 1e-5 of the product of its two SDs (the correlation to 1e-5): the two fits
        # stop at their own tolerances from their own paths (criteria 1e-13 relative apart), and
        # the intercept-slope covariance, 1.5 % of that product, moves with theta's last digits
        scale = abs(base.vcov) if var2 is None else np.sqrt(variances[var1] * variances[var2])
        assert ours.vcov == pytest.approx(base.vcov / k**e, abs=1e-5 * scale / k**e)
        sd_power = e / 2 if var2 is None else 0  # sdcor of a pair is the correlation
        assert ours.sdcor == pytest.approx(ref["sdcor"] / k**sd_power, rel=1e-4)
    assert fit.sigma == pytest.approx(UNSCALED["sigma"], rel=1e-6)


def test_ranef_and_conditional_sds_on_the_users_scale(case):
    key, k, _, fit = case
    r = UNSCALED["ranef"]
    vals, sds = fit.ranef["Subject"], fit.ranef_sd["Subject"]
    scale = np.array([1.0 if t == "(Intercept)" else 1.0 / k for t in r["term"]])
    ours = np.array([vals.loc[lv, t] for t, lv in zip(r["term"], r["level"])])
    ours_sd = np.array([sds.loc[lv, t] for t, lv in zip(r["term"], r["level"])])
    cond_sd = np.array(r["cond_sd"]) * scale
    # 1e-4 relative, or 1e-4 of the conditional SD for modes near zero
    assert np.all(np.abs(ours - np.array(r["value"]) * scale) <= np.maximum(1e-4 * np.abs(ours), 1e-4 * cond_sd))
    assert np.allclose(ours_sd, cond_sd, rtol=1e-4)


def test_fitted_residuals_and_predict_are_the_unscaled_ones(case):
    key, k, _, fit = case
    assert np.allclose(fit.fitted.to_numpy(), UNSCALED["fitted"], rtol=2e-6)
    resid = fit.design.y - np.array(UNSCALED["fitted"])
    assert np.max(np.abs(fit.residuals().to_numpy() - resid)) <= 1e-5 * UNSCALED["sigma"]
    nd = pd.DataFrame({"Days": np.array(UNSCALED["newdata"]["Days"]) * k, "Subject": UNSCALED["newdata"]["Subject"]})
    assert np.allclose(fit.predict(nd, allow_new_levels=True).to_numpy(), UNSCALED["predict_full"], rtol=2e-6)
    assert np.allclose(fit.predict(nd, re_form="~0").to_numpy(), UNSCALED["predict_fixed_only"], rtol=2e-6)


def test_at_lme4s_mapped_theta_the_algebra_is_lme4s(case):
    """start in the user's theta (lme4's, mapped), optimizer=None: the criterion is lme4's own
    deviance function's there, and the printed summary is lme4's, to the letter (its merMod
    assembled at that theta; lme4 prints no formula or data line for it, lmmpy adds the ICC)."""
    key, k, d, _ = case
    ref = RESCALED[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmmpy.lmer(FORMULA, d, start=ref["theta"], optimizer=None)
    assert [str(w.message) for w in caught] == []  # the checks, made on the internal theta, pass
    assert fit.objective == pytest.approx(ref["devfun_at_theta"], abs=1e-9)
    assert np.allclose(fit.theta, ref["theta"], rtol=1e-15)
    ours = [ln for ln in str(fit.summary()).splitlines() if not ln.startswith(("Formula:", "   Data:", "ICC ("))]
    assert ours == ref["summary_text"].splitlines()


def test_summary_of_the_fit_prints_no_convergence_problem(case):
    key, k, _, fit = case
    text = str(fit.summary())
    assert "convergence code" not in text and "Gradient contains" not in text
    assert f"REML criterion at convergence: {RESCALED[key]['attainable_criterion']:.1f}" in text
    theirs = RESCALED[key]["summary_text"].splitlines()
    ours = text.splitlines()
    for block in ("Scaled residuals:", "Random effects:", "Fixed effects:", "Correlation of Fixed Effects:"):
        i = next(n for n, ln in enumerate(theirs) if ln.startswith(block))
        j = next(n for n, ln in enumerate(ours) if ln.startswith(block))
        assert ours[j : j + 4] == theirs[i : i + 4], block


def test_satterthwaite_and_kenward_roger_on_the_users_scale(case):
    """lmerTest's unscaled tables: estimates and SEs of Days / k, df, t and p unchanged (on
    main, Kenward-Roger's df for Days * 1e-8 was 4270.7 instead of 17)."""
    key, k, _, fit = case
    scale = np.array([1.0, 1.0 / k])
    for tab, ref in (
        (fit.satterthwaite(), UNSCALED["satterthwaite"]),
        (fit.kenward_roger(), UNSCALED["kenward_roger"]),
    ):
        assert np.allclose(tab["Estimate"], np.array(ref["estimate"]) * scale, rtol=1e-6)
        assert np.allclose(tab["Std. Error"], np.array(ref["se"]) * scale, rtol=1e-4)
        assert np.allclose(tab["df"], ref["df"], rtol=1e-3)
        assert np.allclose(tab["t value"], ref["t"], rtol=1e-4)
        assert np.allclose(tab["Pr(>|t|)"], ref["p"], rtol=2e-3)
    aov = fit.anova()
    assert aov.loc["Days", "F value"] == pytest.approx(UNSCALED["satterthwaite"]["t"][1] ** 2, rel=1e-4)
    assert aov.loc["Days", "DenDF"] == pytest.approx(UNSCALED["satterthwaite"]["df"][1], rel=1e-3)


def test_wald_intervals_on_the_users_scale(case):
    key, k, _, fit = case
    ci = fit.confint("wald")
    se = np.sqrt(UNSCALED["vcov_fixef"][1][1]) / k
    b = UNSCALED["fixef"]["Days"] / k
    assert ci.loc["Days"].to_numpy() == pytest.approx([b - 1.959964 * se, b + 1.959964 * se], rel=1e-4)


@pytest.mark.parametrize("k", [1e8, 1e-8])
def test_profile_intervals_on_the_users_scale(k):
    """lme4's unscaled profile intervals of Reaction ~ Days + (0 + Days | Subject), transformed:
    sd_Days and Days / k, sigma and the intercept as they are; within 1e-3 relative (as the
    unscaled profile test).  On main Days' interval was off by 3e-5 (1e8: the root finder's
    absolute tolerance) to 1e-2 (refits of the reduced model on the unscaled columns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmpy.lmer(SLOPE_ONLY["formula"], scaled_data(k))
    assert fit.objective == pytest.approx(SLOPE_ONLY["criterion"] + 2 * np.log(k), abs=1e-6)
    ci = fit.confint("profile", old_names=False)  # lme4's oldNames = FALSE, as the reference
    p = SLOPE_ONLY["confint_profile"]
    for name, lo, hi in zip(p["param"], p["lower"], p["upper"]):
        f = 1.0 / k if name in ("sd_Days|Subject", "Days") else 1.0
        assert ci.loc[name].to_numpy() == pytest.approx([lo * f, hi * f], rel=1e-3), name
    prof = fit.profile(level=0.95, n=3)
    days = prof[prof[".par"] == "Days"]
    assert days["zeta"].to_numpy() == pytest.approx([-1.959964, 0.0, 1.959964], abs=1e-3)


def test_refit_and_lrt_on_the_rescaled_data():
    """refit (used by anova, profiles and the bootstrap) goes through the rescaled fit too: an
    ML refit, even from lme4's default start rather than the fit's theta (main: 2447.19), reaches
    lme4's unscaled ML deviance, and the likelihood-ratio test of Days' random slope is the
    unscaled data's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = scaled_data(1e8)
        fit = lmmpy.lmer(FORMULA, d)
        ml = fit.refit(fit.design.y, REML=False, start=None)
        small = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d)
        plain = lmmpy.datasets.load("sleepstudy")
        ref_tab = lmmpy.anova(lmmpy.lmer("Reaction ~ Days + (1 | Subject)", plain), lmmpy.lmer(FORMULA, plain))
    assert ml.objective == pytest.approx(UNSCALED["ml_deviance"], abs=1e-6)
    tab = lmmpy.anova(small, fit)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref_tab["Chisq"].iloc[1], rel=1e-6)


def test_non_finite_gradient_is_not_ok(monkeypatch):
    """A gradient check that meets a non-finite value fails the fit: converged False, a
    ConvergenceWarning that it did not converge, and the summary's convergence line not
    '0 (OK)' (main printed 'convergence code: 0 (OK)' above 'Gradient contains NAs')."""
    import lmmpy.fit.checks as checks

    real = checks.gradient_hessian

    def nan_gradient(fg, x, delta=1e-5):
        g, H = real(fg, x, delta)
        g[0] = np.nan
        return g, H

    monkeypatch.setattr(checks, "gradient_hessian", nan_gradient)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmmpy.lmer(FORMULA, lmmpy.datasets.load("sleepstudy"))
    said = [str(w.message) for w in caught if issubclass(w.category, lmmpy.ConvergenceWarning)]
    assert any("did not converge" in m for m in said), said
    assert not fit.optsum.converged
    assert "not finite" in fit.optsum.message
    text = str(fit.summary())
    line = next(ln for ln in text.splitlines() if "convergence code" in ln)
    assert "(OK)" not in line and "code: 0" not in line
    assert "Gradient contains NAs" in text


def test_non_finite_criterion_is_not_ok():
    """Likewise a criterion that is not finite at the optimum, whatever the optimizer reported."""
    from lmmpy.fit.optimize import OptSummary
    from lmmpy.lmer import _check

    model = lmmpy.mk_lmer_devfun(lmmpy.lformula("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy")))
    opt = OptSummary(
        optimizer="test",
        theta0=np.ones(1),
        lower=np.zeros(1),
        theta=np.ones(1),
        fmin=np.inf,
        converged=True,
        message="stopped",
    )
    out = _check(model, opt, lmmpy.LmerControl(check_conv=False))
    assert not out.converged and "not finite" in out.message
    assert out.return_code != 0


def test_the_maps_are_exact():
    """The docstring's maths: on the internal columns at c * theta the criterion is the user's
    minus 2 sum log s (REML; ML: the same), the gradient the user's / c; here with two
    rescaled columns in one vector-valued term (both rows of T mapped) and a rescaled
    fixed-effects column of its own."""
    from lmmpy.fit.deviance import LmmModel
    from lmmpy.fit.gradient import profiled_gradient
    from lmmpy.fit.scaling import ColumnScaling

    d = lmmpy.datasets.load("sleepstudy")
    d["Days"] = d["Days"] * 1e7
    d["x"] = np.cos(np.arange(len(d))) * 1e-6
    d["w"] = np.sin(np.arange(len(d))) * 1e5
    design = lmmpy.lformula("Reaction ~ Days + x + w + (Days + x | Subject)", d)
    scaling = ColumnScaling.of(design)
    assert list(scaling.x) == [1.0, 2.0**26, 2.0**-20, 2.0**17]
    assert list(scaling.z[0]) == [1.0, 2.0**26, 2.0**-20]
    rng = np.random.default_rng(1)
    for reml in (True, False):
        user = LmmModel(design, REML=reml)
        inner = scaling.internal_model(user)
        for _ in range(3):
            theta_s = np.abs(rng.normal(size=6)) + 0.1
            f_s = inner(theta_s)
            g_s = profiled_gradient(inner)
            f_u = user(scaling.theta_to_user(theta_s))
            assert f_u == pytest.approx(f_s + scaling.criterion_shift(reml), abs=1e-9)
            assert np.allclose(profiled_gradient(user), g_s * scaling.theta_factor, rtol=1e-9)


def test_ordinary_models_are_fitted_as_before():
    """No column of the reference models is outside the range, so none is rescaled (their
    numbers and summaries stay as tests/results/test_reference.py and test_summary.py check them)."""
    import conftest
    from lmmpy.fit.scaling import ColumnScaling

    for mid in conftest.MODEL_IDS:
        design = lmmpy.lformula(conftest.spec(mid)["formula"], conftest.model_data(mid))
        assert ColumnScaling.of(design) is None, mid
    fit = lmmpy.lmer(FORMULA, lmmpy.datasets.load("sleepstudy"))
    assert fit.optsum.scaling is None and not any("rescaled" in n for n in fit.optsum.notes)
