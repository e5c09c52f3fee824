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
from pathlib import Path

import lmmpy

import pytest

from conftest import fitted, model_params, reference

# both routes of the Schur complement's weighted Gram (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("pair_route")

NUM = re.compile(r"-?\d+\.?\d*(?:e[+-]\d+)?")
GRAD_MSG = re.compile(r"^(Model failed to converge with max\|grad\| = )(\S+)( .*)$")


def lines(text):
    out = []
    for line in text.splitlines():
        if line.startswith("ICC ("):
            continue
        out.append(re.sub(r"^optimizer \([^)]*\)", "optimizer (X)", line))
    return out


@pytest.mark.parametrize("mid", model_params())
def test_text_identical_at_lme4_theta(mid):
    """Identical text; in lme4's gradient warning the finite-difference gradient itself may
    differ in its 4th digit (criteria equal to 1e-11, differenced over steps of 1e-4)."""
    ours = lines(str(fitted(mid, at_lme4_theta=True).summary()))
    theirs = lines(reference(mid)["summary_text"])
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        ma, mb = GRAD_MSG.match(a), GRAD_MSG.match(b)
        if ma and mb:
            assert (ma.group(1), ma.group(3)) == (mb.group(1), mb.group(3))
            assert float(ma.group(2)) == pytest.approx(float(mb.group(2)), rel=1e-3)
        else:
            assert a == b


def _last_digit_unit(s):
    return 10.0 ** -(len(s.split(".")[1]) if "." in s and "e" not in s else 0)


@pytest.mark.parametrize("mid", model_params())
def test_numbers_at_printed_precision(mid):
    fit = fitted(mid)
    rel = 5e-3 if fit.objective < reference(mid)["criterion"] - 1e-5 else 1e-3
    ours = lines(str(fit.summary()))
    theirs = lines(reference(mid)["summary_text"])
    if any(GRAD_MSG.match(b) for b in theirs) and not fit.optsum.messages:
        # lme4 failed its gradient check; lmmpy's optimum passes it with a lower criterion
        assert fit.objective <= reference(mid)["criterion"]
        theirs = [b for b in theirs if not (GRAD_MSG.match(b) or b.startswith("optimizer (X)"))]
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
    for section in (
        "REML criterion at convergence:",
        "Scaled residuals:",
        "Random effects:",
        "Number of obs: 180, groups:  Subject, 18",
        "Fixed effects:",
        "Correlation of Fixed Effects:",
    ):
        assert section in text
    icc = fit.icc()
    vc = fit.varcorr
    tau2 = vc.loc[(vc.grp == "Subject") & (vc.var1 == "(Intercept)") & vc.var2.isna(), "vcov"].item()
    assert icc["Subject"] == pytest.approx(tau2 / (tau2 + fit.sigma**2))
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


LMERTEST = Path(__file__).parents[1] / "reference" / "lmertest"


@pytest.mark.parametrize(
    "mid, dataset",
    [("sleepstudy_slopes_reml", "sleepstudy"), ("mlbook2_slope_ml", "mlbook2"), ("pastes_cask_reml", "Pastes")],
)
def test_satterthwaite_summary_prints_as_lmertest(mid, dataset):
    """At lme4's theta, lmerTest's title and fixed-effects block (df, p-values, stars, legend)
    to the letter; the rest is lme4's summary, tested above.  (R printed its call for the
    formula here, so that line is left out.)"""
    import json

    ref = json.loads((LMERTEST / f"{mid}.json").read_text())
    fit = lmmpy.lmer(
        ref["formula"],
        lmmpy.datasets.load(dataset),
        REML=ref["REML"],
        start=ref["theta"],
        optimizer=None,
        control={"check_conv": False},
        data_name="d",
    )
    ours = [ln for ln in str(fit.summary(ddf="satterthwaite")).splitlines() if not ln.startswith(("ICC (", "Formula:"))]
    theirs = [ln for ln in ref["summary_text"].splitlines() if not ln.startswith("Formula:")]
    assert ours == theirs
