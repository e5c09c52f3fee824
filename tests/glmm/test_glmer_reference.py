"""lmmpy.glmer against lme4's glmer on the reference models (tests/reference/glmm/).

Fits by lmmpy's optimizer: -2 logLik at most 1e-3 above lme4's (lower is a better optimum),
and then fixed effects within 1e-3 relative (or 1e-3 of their standard error), standard errors
1e-2 relative, variance components 5e-3 relative (1e-4 absolute on the linear predictor's
scale: divided by the largest |value| of the two columns, at least 1, so that a covariate in
units of 1e-3 does not make its slope's variance, ~1e-7, pass unseen), lme4's deviance (the sum
of squared deviance residuals) 1e-3 relative; the counts (nobs, df, df.resid, groups) exactly.

At lme4's estimates (the model evaluated there): fitted values, the linear predictor and the
residual heads 1e-5 relative (lme4 stops PIRLS at 1e-7 relative change of the penalised
deviance), the conditional modes and their SDs 1e-3 relative, standard errors 2e-3 relative
(except SE_AT_LME4_RTOL),
the summary text identical where lme4's standard errors are reproduced to its printed digits.
"""

import math

import numpy as np
import pytest

from glmm_refs import SPEC, at_lme4, fitted, reference

SLOW = {"verbagg_binomial_slope"}  # ~40 s at lme4's estimates (its Hessian: 162 deviances)
# lmmpy does not reach lme4's optimum (or a better one) here yet (none now: the binomial random
# slopes on a shifted and on a 1e3-scaled covariate are fitted on centred and rescaled columns,
# lmmpy.fit.scaling; Gamma's log link reaches 3.6e-4 below lme4 since PIRLS goes on to small steps)
NOT_YET: dict = {}

# lme4's PIRLS (stopped at 1e-7 relative change, Fisher scoring converging linearly with a
# non-canonical link) leaves the modes of this model further from their optimum: at lme4's
# estimates its residuals are 2.5e-6 (absolute) from lmmpy's converged ones
RESIDUAL_ATOL = {"gamma_log_positive": 1e-5}
# lme4's standard errors on the shifted covariate come from its finite-difference Hessian of its
# PIRLS path in coordinates where intercept and slope are 0.99995 correlated: that Hessian moves
# with where PIRLS starts (lp0, the nAGQ = 0 stage's fit), 7.11 for the intercept's SE from
# lmmpy's stage 0 on these columns, 6.89 from the centred model's, lme4's 7.005: it is held at
# 2e-2; the fit's own SEs (6.995, exact maps of the centred fit's) are checked against the
# centred model in test_glmer_scaling.py
SE_AT_LME4_RTOL = {"binomial_slope_shifted_maxfun": 2e-2}


def _params(ids):
    out = []
    for m in ids:
        marks = [pytest.mark.slow] if m in SLOW else []
        if m in NOT_YET:
            marks.append(pytest.mark.xfail(reason=NOT_YET[m], strict=True))
        out.append(pytest.param(m, marks=marks))
    return out


ALL = list(SPEC.index)
# the VerbAgg full fits take 0.5-2 minutes here: their fits against lme4 are checked by
# ../shared/tools/check_glmm.py (and bench/glmm_benchmark.py), their numbers at lme4's estimates below
FIT_IDS = [m for m in ALL if not m.startswith("verbagg_")]
AT_LME4 = [m for m in ALL if int(SPEC.loc[m, "nAGQ"]) != 0 and m not in NOT_YET]
EXACT_SUMMARY = ["cbpp_binomial_laplace", "cbpp_binomial_agq25", "cbpp_proportion_weights", "cbpp_binomial_probit"]


def close(x, y, rel, absol=0.0):
    return abs(x - y) <= max(absol, rel * abs(y))


def column_size(fit, group, name) -> float:
    """max(1, the largest |value|) of a random-effects column (1 for the residual's rows)."""
    for t in fit.design.reterms:
        if t.group == group and name in t.cnames:
            return max(1.0, float(np.max(np.abs(t.X[:, t.cnames.index(name)]))))
    return 1.0


@pytest.mark.parametrize("model_id", _params(FIT_IDS))
def test_fit_matches_lme4(model_id):
    ref = reference(model_id)
    fit, _ = fitted(model_id)
    m2ll = -2.0 * fit.loglik
    assert m2ll <= ref["deviance_minus2loglik"] + 1e-3
    assert fit.nobs == ref["nobs"] and fit.npar == ref["df"] and fit.df_resid == ref["df_resid"]
    assert fit.ngrps == ref["ngrps"]
    assert fit.is_singular == ref["is_singular"]
    if m2ll < ref["deviance_minus2loglik"] - 1e-2:
        return  # a better optimum than lme4's: its estimates are no yardstick
    for name, v in ref["fixef"].items():
        assert close(fit.fixef[name], v, 1e-3, 1e-3 * ref["se"][name]), name
        assert close(fit.se[name], ref["se"][name], 1e-2), name
    # lme4's NA (var1 of the Residual row, var2 of variances) is None in the JSON, NaN or None here
    ours = {
        (r.grp, r.var1 if isinstance(r.var1, str) else None, r.var2 if isinstance(r.var2, str) else None): r.vcov
        for r in fit.varcorr.itertuples()
    }
    for r in ref["varcorr"]:
        unit = column_size(fit, r["grp"], r["var1"]) * column_size(fit, r["grp"], r["var2"] or r["var1"])
        assert close(ours[(r["grp"], r["var1"], r["var2"])], r["vcov"], 5e-3, 1e-4 / unit), r
    assert len(ours) == len(ref["varcorr"])
    assert close(fit.deviance, ref["deviance"], 1e-3)
    assert close(fit.aic, ref["AIC"], 1e-5, 1e-3) or m2ll < ref["deviance_minus2loglik"]


@pytest.mark.parametrize("model_id", _params(AT_LME4))
def test_at_lme4_estimates(model_id):
    ref = reference(model_id)
    fit = at_lme4(model_id)
    k = len(ref["fitted_head"])
    np.testing.assert_allclose(fit.fitted.to_numpy()[:k], ref["fitted_head"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(fit.predict().to_numpy()[:k], ref["linpred_head"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.predict(type="response").to_numpy()[:k], ref["fitted_head"], rtol=1e-5, atol=1e-8)
    atol = RESIDUAL_ATOL.get(model_id, 1e-6)
    np.testing.assert_allclose(fit.residuals("pearson").to_numpy()[:k], ref["pearson_resid_head"], rtol=1e-5, atol=atol)
    np.testing.assert_allclose(
        fit.residuals("deviance").to_numpy()[:k], ref["deviance_resid_head"], rtol=1e-5, atol=atol
    )
    q = np.quantile(fit.residuals("pearson", scaled=True).to_numpy(), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(q, ref["scaled_resid_quantiles"], rtol=1e-4, atol=1e-6)
    for block in ref["ranef"]:
        g = block["group"]
        modes, sds = fit.ranef[g], fit.ranef_sd[g]
        got = [modes.loc[lv, t] for lv, t in zip(block["level"], block["term"])]
        got_sd = [sds.loc[lv, t] for lv, t in zip(block["level"], block["term"])]
        np.testing.assert_allclose(got, block["value"], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(got_sd, block["cond_sd"], rtol=1e-3, atol=1e-5)
    rtol = SE_AT_LME4_RTOL.get(model_id, 2e-3)
    for name, v in ref["se"].items():
        assert close(fit.se[name], v, rtol), name
        assert close(fit.zvalues[name], ref["zvalue"][name], rtol), name
    # lme4's criterion there is that of its PIRLS (stopped at 1e-7, log|L|^2 one step behind):
    # lmmpy's converged one is never above it, and below by at most 1e-2 (6e-3 on VerbAgg's slope model)
    assert -2.0 * fit.loglik <= ref["deviance_minus2loglik"] + 1e-6
    assert -2.0 * fit.loglik >= ref["deviance_minus2loglik"] - 1e-2


@pytest.mark.parametrize("model_id", EXACT_SUMMARY)
def test_summary_text_is_lme4s(model_id):
    fit = at_lme4(model_id)
    assert str(fit.summary()).rstrip("\n") == reference(model_id)["summary_text"]


@pytest.mark.parametrize("model_id", [m for m in AT_LME4 if m not in EXACT_SUMMARY])
def test_summary_text_to_the_fixed_effects(model_id):
    """Title, family, formula, criteria, residuals, random effects and groups as lme4 prints
    them (the fixed effects' last digits follow lme4's Hessian of its own PIRLS path)."""
    fit = at_lme4(model_id)
    ref_text = reference(model_id)["summary_text"]
    head = ref_text.split("\nFixed effects:")[0]
    assert str(fit.summary()).split("\nFixed effects:")[0] == head


def test_singular_fit_warns_as_lme4():
    fit, caught = fitted("singular_binary")
    assert fit.theta[0] == 0.0
    assert caught == ["boundary (singular) fit: see help('isSingular')"]


def test_offset_argument_and_term_agree():
    a, _ = fitted("exposure_poisson_offset")
    b, _ = fitted("exposure_poisson_offset_term")
    assert math.isclose(a.loglik, b.loglik, rel_tol=1e-10)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-6)
