"""lmer on a covariate far from 0 (lmmpy.fit.scaling's centring, as glmer's).

sleepstudy's ``Reaction ~ D + (D | Subject)`` with D = Days + 100 is the model on Days
reparametrised: b_0 + b_1 Days = (b_0 - 100 b_1) + b_1 D.  Fitted as it was (no centring),
lmmpy's ML fit failed its gradient check and fell back to EM, the REML fit warned of a large
eigenvalue ratio.  The yardstick is lmmpy's fit on Days (which matches lme4 to 1e-6 elsewhere,
tests/test_lme4_reference), mapped by hand: the criterion to 1e-9 relative (rounding: the two
fits are made on differently centred internal columns and each stops at its own tolerance),
the fixed effects, variance components and standard errors to 1e-5 relative (the mapped
intercept's variance adds terms 1e4 times larger than itself, which costs ~4 digits).
"""

import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy.fit.status import Check, FitStatus, Note

SHIFT = 100.0


def fit_of(column, d, REML):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trustworthy fit: no warning at all
        return lmmpy.lmer(f"Reaction ~ {column} + ({column} | Subject)", d, REML=REML)


@pytest.fixture(scope="module")
def data():
    d = lmmpy.datasets.load("sleepstudy")
    d["D"] = d["Days"] + SHIFT
    return d


def varcorr(fit) -> dict:
    return {(r.grp, r.var1, r.var2 if isinstance(r.var2, str) else None): r.vcov for r in fit.varcorr.itertuples()}


@pytest.mark.parametrize("REML", [True, False])
def test_shifted_fit_is_the_unshifted_one_mapped(data, REML):
    a, b = fit_of("Days", data, REML), fit_of("D", data, REML)
    assert b.optsum.fmin == pytest.approx(a.optsum.fmin, rel=1e-9)
    b0, b1 = a.fixef["(Intercept)"], a.fixef["Days"]
    assert b.fixef["(Intercept)"] == pytest.approx(b0 - SHIFT * b1, rel=1e-5)
    assert b.fixef["D"] == pytest.approx(b1, rel=1e-5)
    va, vb = varcorr(a), varcorr(b)
    g = "Subject"
    v0, v1, c01 = va[(g, "(Intercept)", None)], va[(g, "Days", None)], va[(g, "(Intercept)", "Days")]
    assert vb[(g, "(Intercept)", None)] == pytest.approx(v0 - 2 * SHIFT * c01 + SHIFT**2 * v1, rel=1e-5)
    assert vb[(g, "(Intercept)", "D")] == pytest.approx(c01 - SHIFT * v1, rel=1e-5)
    assert vb[(g, "D", None)] == pytest.approx(v1, rel=1e-5)
    assert b.sigma == pytest.approx(a.sigma, rel=1e-6)
    V = a.vcov.to_numpy()
    se0 = np.sqrt(V[0, 0] - 2 * SHIFT * V[0, 1] + SHIFT**2 * V[1, 1])
    assert b.se["(Intercept)"] == pytest.approx(se0, rel=1e-5)
    assert b.se["D"] == pytest.approx(a.se["Days"], rel=1e-5)
    assert b.optsum.status is FitStatus.CONVERGED and b.optsum.messages == []
    assert [n.kind for n in b.optsum.fit_notes] == [Note.CENTRED]
    assert b.optsum.scaling is None  # the theta map is not diagonal: steps in theta are the user's
    assert a.optsum.fit_notes == []  # nothing done to the model on Days


def test_satterthwaite_on_the_shifted_covariate(data):
    """The slope's t test is the same on Days and on Days + 100 (Satterthwaite's df to 1e-4:
    finite differences in different coordinates)."""
    a, b = fit_of("Days", data, True), fit_of("D", data, True)
    sa, sb = a.satterthwaite(), b.satterthwaite()
    assert sb.loc["D", "df"] == pytest.approx(sa.loc["Days", "df"], rel=1e-4)
    assert sb.loc["D", "t value"] == pytest.approx(sa.loc["Days", "t value"], rel=1e-5)


def test_columns_that_lose_digits_are_flagged():
    """Days + 1e6: the centred fit is fine, but the data's own columns cannot evaluate the
    criterion at its optimum to better than ~1e-3 (the intercept's variance is 3.5e13): the fit
    says so instead of reporting those digits silently."""
    d = lmmpy.datasets.load("sleepstudy")
    d["D"] = d["Days"] + 1e6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmmpy.lmer("Reaction ~ D + (D | Subject)", d)
    kinds = [f.kind for f in fit.optsum.findings]
    assert Check.COLUMNS_LOSE_DIGITS in kinds
    assert any("lose digits to rounding" in str(w.message) for w in caught)
    assert "lose digits to rounding" in str(fit.summary())


def test_profile_of_the_centred_fit_matches_the_model_on_days(data):
    """lmer's profile of the centred fit (lme4 itself stops 20 above the optimum on D and its
    profile fails with 'profiling detected new, lower deviance'): the parameters the shift does
    not change -- the slope, its sd, sigma -- have the intervals of the model on Days (1e-4
    relative: each profile is a spline through its own points)."""
    a = fit_of("Days", data, True).confint("profile", progress=False)
    b = fit_of("D", data, True).confint("profile", progress=False)
    for row_a, row_b in ((".sig03", ".sig03"), (".sigma", ".sigma"), ("Days", "D")):
        np.testing.assert_allclose(b.loc[row_b].to_numpy(), a.loc[row_a].to_numpy(), rtol=1e-4)
