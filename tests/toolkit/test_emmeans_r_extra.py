"""lmmpy.emmeans on lmer fits against R's emmeans 1.8.4-1 for what the other references leave
out: Kenward-Roger df on the full mlbook2 model and on a random-slope model with a numeric
covariate in ``at=`` (pbkrtest 0.5.2), ``at=`` with a by-variable (Satterthwaite, lmerTest
3.1-3), all 45 pairs of 10 cells with Tukey, bonferroni and holm, and asymptotic (z) tests.
References: tests/reference/toolkit/emmeans_extra/ (toolkit_extra.R there, R 4.2.2, lme4 1.1-31).

Tolerances: means and contrasts 1e-5 relative (lmmpy's and lme4's REML estimates agree to
~1e-7); SEs 1e-4 relative, df 1e-3 relative (both are derivatives of the criterion at the
optimum, computed numerically by lmerTest / exactly by lmmpy), p values 1e-4 absolute; the
printed tables identical (they show 3-4 significant digits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmpy

from test_emmeans import assert_columns
from toolkit_refs import fit_for

REF = Path(__file__).resolve().parent.parent / "reference" / "toolkit" / "emmeans_extra"
SPEC = pd.read_csv(REF / "models.tsv", sep="\t", keep_default_na=False).set_index("id")


def _case(name: str):
    ref = json.loads((REF / f"{name}.json").read_text())
    row = SPEC.loc[name]
    fit = fit_for({"formula": ref["formula"], "dataset": ref["dataset"], "REML": ref["REML"]})
    at = {k: list(np.atleast_1d(v)) for k, v in ref["at"].items()} if ref.get("at") else None
    emm = lmmpy.emmeans(fit, row["specs"], ddf=row["df"], at=at)
    return ref, row, emm


@pytest.mark.parametrize("name", list(SPEC.index))
def test_means_pairs_and_their_print_match_emmeans(name):
    ref, row, emm = _case(name)
    asymptotic = row["df"] == "asymptotic"
    lims = ["asymp.LCL", "asymp.UCL"] if asymptotic else ["lower.CL", "upper.CL"]
    frame = emm.to_frame()
    assert list(frame.columns[-5:]) == ["emmean", "SE", "df", *lims]
    assert_columns(frame, ref["emmeans"], ["emmean", "SE", "df", *lims])
    assert str(emm) == ref["emmeans_text"] + "\n"
    ratio = "z.ratio" if asymptotic else "t.ratio"
    adjusted = {"tukey": (ref["pairs"], ref["pairs_text"])}
    for method, table in (ref.get("pairs_adjusted") or {}).items():
        adjusted[method] = (table, ref["pairs_adjusted_text"][method])
    for method, (table, text) in adjusted.items():
        pairs = emm.pairs(adjust=method)
        got = pairs.to_frame()
        assert list(got["contrast"]) == table["contrast"], method
        assert_columns(got, table, ["estimate", "SE", "df", ratio, "p.value"])
        assert str(pairs) == text + "\n", method


def test_kenward_roger_at_numeric_values_has_the_subjects_df():
    """sleepstudy (Days | Subject): Kenward-Roger's df of every mean and pair is 17 (18
    subjects, one slope each), as pbkrtest gives it, where Satterthwaite's are not."""
    _, _, emm = _case("sleepstudy_days_at_kr")
    np.testing.assert_allclose(emm.to_frame()["df"], 17.0, rtol=1e-6)
    np.testing.assert_allclose(emm.pairs().to_frame()["df"], 17.0, rtol=1e-6)


def test_kenward_roger_on_a_large_model_is_a_clear_error():
    """Kenward-Roger works with dense n x n matrices: lmmpy stops above n = 3000, where emmeans
    too stops using it by default (pbkrtest.limit = 3000); the full mlbook2 model has n = 3758."""
    fit = fit_for({"formula": "langPOST ~ IQ_verb + denomina * sex + (1 | schoolnr)", "dataset": "mlbook2"})
    with pytest.raises(lmmpy.errors.LmmError, match="n = 3758"):
        lmmpy.emmeans(fit, "denomina | sex", ddf="kenward-roger")
