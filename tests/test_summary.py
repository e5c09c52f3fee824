"""summary() prints what lme4's print(summary(fit)) prints.

At lme4's own theta the text must be identical, line for line, except the optimizer's name
in the convergence line and lmmpy's extra ICC line: that holds the printer to lme4 exactly.

At lmmpy's own optimum the layout must be identical and every printed number equal to lme4's,
to one unit of its last printed digit or 1e-3 relative: lme4's theta lies 2e-5 to 2e-4 from
the optimum (a Nelder-Mead polish from lmmpy's optimum moves theta by < 4e-7 and lowers the
criterion by < 1e-9), so lme4's variances can differ from the optimum's in the 4th digit
(sleepstudy: 612.10 against the optimum's 612.09).  Where lmmpy's criterion is lower than
lme4's by more than 1e-5 (mlbook2_interactions_reml, 1.1e-4 lower), the allowance is the
issue's variance-component tolerance, 5e-3 relative.
"""
import re

import pytest

from conftest import MODEL_IDS, SLOW, fitted, reference

# lme4 printed its gradient-check warning ("Model failed to converge with max|grad| = ...")
# for this model; lmmpy's convergence checks come with issue 3.
LME4_CONVERGENCE_WARNING = {"mlbook2_factor_uncorr_reml"}


def model_params():
    out = []
    for m in MODEL_IDS:
        marks = [pytest.mark.slow] if m in SLOW else []
        if m in LME4_CONVERGENCE_WARNING:
            marks.append(pytest.mark.xfail(strict=True, reason="lme4's convergence-check message (issue 3)"))
        out.append(pytest.param(m, marks=marks))
    return out

NUM = re.compile(r"-?\d+\.?\d*(?:e[+-]\d+)?")


def lines(text):
    out = []
    for line in text.splitlines():
        if line.startswith("ICC ("):
            continue
        out.append(re.sub(r"^optimizer \(\w+\)", "optimizer (X)", line))
    return out


@pytest.mark.parametrize("mid", model_params())
def test_text_identical_at_lme4_theta(mid):
    ours = lines(str(fitted(mid, at_lme4_theta=True).summary()))
    assert ours == lines(reference(mid)["summary_text"])


def _last_digit_unit(s):
    return 10.0 ** -(len(s.split(".")[1]) if "." in s and "e" not in s else 0)


@pytest.mark.parametrize("mid", model_params())
def test_numbers_at_printed_precision(mid):
    fit = fitted(mid)
    rel = 5e-3 if fit.objective < reference(mid)["criterion"] - 1e-5 else 1e-3
    ours = lines(str(fit.summary()))
    theirs = lines(reference(mid)["summary_text"])
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert NUM.sub("#", a).split() == NUM.sub("#", b).split(), (a, b)
        for x, y in zip(NUM.findall(a), NUM.findall(b)):
            if x != y:
                tol = max(_last_digit_unit(y) * 1.0001, rel * abs(float(y)))
                assert abs(float(x) - float(y)) <= tol, (a, b)


def test_summary_sections_and_icc():
    fit = fitted("sleepstudy_slopes_reml")
    text = str(fit.summary())
    for section in ("REML criterion at convergence:", "Scaled residuals:", "Random effects:",
                    "Number of obs: 180, groups:  Subject, 18", "Fixed effects:",
                    "Correlation of Fixed Effects:"):
        assert section in text
    icc = fit.icc()
    vc = fit.varcorr
    tau2 = vc.loc[(vc.grp == "Subject") & (vc.var1 == "(Intercept)") & vc.var2.isna(), "vcov"].item()
    assert icc["Subject"] == pytest.approx(tau2 / (tau2 + fit.sigma ** 2))
    assert f"ICC (intercepts): Subject, {icc['Subject']:.4f}" in text
    assert fit.summary()._repr_html_().startswith("<pre>")


def test_ml_summary_has_aic_table():
    text = str(fitted("mlbook2_empty_ml").summary())
    assert "maximum likelihood" in text
    assert "     AIC      BIC   logLik deviance df.resid " in text


def test_icc_crossed_factors_share_denominator():
    fit = fitted("penicillin_crossed_reml")
    icc = fit.icc()
    vc = fit.varcorr.set_index("grp")["vcov"]
    total = vc.sum()
    assert icc["plate"] == pytest.approx(vc["plate"] / total)
    assert icc["sample"] == pytest.approx(vc["sample"] / total)


def test_correlation_hidden_beyond_12_fixed_effects():
    from lmmpy.results.summary import COR_MAX, Summary
    s = fitted("mlbook2_interactions_reml").summary()
    assert len(s.coefficients) <= COR_MAX and "Correlation of Fixed Effects" in str(s)
    assert isinstance(s, Summary)
