"""lmmpy.emmeans against R's emmeans 1.8.4 (lmerTest 3.1-3, pbkrtest 0.5.2): marginal means,
contrasts with every adjustment, Satterthwaite / Kenward-Roger / asymptotic df, at=, factor(),
a non-estimable cell, and the printed text.  References: tests/reference/toolkit/ (made by
toolkit_reference.R and toolkit_extra.R beside them).

Tolerances: means and contrast estimates 1e-5 relative (1e-6 absolute; the random-slope
model's estimates agree with lme4's to ~2e-6 relative, the others' to ~1e-9), SE 1e-4 relative, df 1e-3 relative
(the df are numerical derivatives, Richardson-extrapolated as numDeriv does, and the random-slope
model's estimates agree with lme4's to ~1e-5), p values 1e-4 absolute.  The printed text must be
identical (it rounds to 3-4 significant digits)."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.errors import LmmError

from toolkit_refs import REF, fit_for, load_ref

EXTRA = sorted(
    p.stem for p in REF.glob("extra_*.json") if "emmeans" in load_ref(p.stem) and "family" not in load_ref(p.stem)
)
TOL = {"emmean": (1e-5, 1e-6), "estimate": (1e-5, 1e-6), "SE": (1e-4, 0), "df": (1e-3, 0), "p.value": (0, 1e-4)}
TOL.update({"t.ratio": (1e-5, 1e-6), "z.ratio": (1e-5, 1e-6)})


def _num(col) -> np.ndarray:
    return np.array([np.inf if v == "Inf" else (np.nan if v is None else v) for v in col], dtype=float)


def assert_columns(got: pd.DataFrame, want: dict, cols):
    want = pd.DataFrame(want)
    assert len(got) == len(want)
    for c in cols:
        rel, ab = TOL.get(c, (1e-6, 1e-9))
        g, w = got[c].to_numpy(float), _num(want[c])
        if c == "df" and np.isnan(w).all() and np.isinf(g).all():  # R's Inf is null in the JSON
            continue
        assert np.array_equal(np.isnan(g), np.isnan(w)), c
        ok = ~np.isnan(w)
        if c == "df" and np.isinf(w[ok]).all():
            assert np.isinf(g[ok]).all()
            continue
        np.testing.assert_allclose(g[ok], w[ok], rtol=rel, atol=ab, err_msg=c)


def test_shared_reference_denomina_by_sex():
    ref = load_ref("mlbook2_denomina_sex")
    fit = fit_for({**ref, "subset": ""})
    e = lmmpy.emmeans(fit, ref["specs"])
    frame = e.to_frame()
    assert list(frame.columns) == ["denomina", "sex", "emmean", "SE", "df", "lower.CL", "upper.CL"]
    assert list(frame["denomina"].astype(str)) == ref["emmeans"]["denomina"]
    assert list(frame["sex"].astype(str)) == ref["emmeans"]["sex"]
    assert_columns(frame, ref["emmeans"], ["emmean", "SE", "df", "lower.CL", "upper.CL"])
    pairs = e.pairs(adjust="tukey").to_frame()
    assert list(pairs.columns) == ["contrast", "sex", "estimate", "SE", "df", "t.ratio", "p.value"]
    assert list(pairs["contrast"]) == ref["pairs"]["contrast"]
    assert_columns(pairs, ref["pairs"], ["estimate", "SE", "df", "t.ratio", "p.value"])
    assert str(e) == ref["emmeans_text"] + "\n"


@pytest.mark.parametrize("name", EXTRA)
def test_emmeans_and_contrasts_match_r(name):
    ref = load_ref(name)
    fit = fit_for(ref)
    e = lmmpy.emmeans(fit, ref["specs"], ddf=ref["ddf"], at=ref.get("at"))
    frame = e.to_frame()
    lims = ["asymp.LCL", "asymp.UCL"] if ref["ddf"] == "asymptotic" else ["lower.CL", "upper.CL"]
    assert list(frame.columns[-5:]) == ["emmean", "SE", "df", *lims]
    assert_columns(frame, ref["emmeans"], ["emmean", "SE", "df", *lims])
    assert str(e) == ref["emmeans_text"] + "\n"
    for cname, c in ref["contrasts"].items():
        got = e.contrast(c["method"], adjust=c["adjust"])
        table = got.to_frame()
        assert list(table["contrast"]) == c["table"]["contrast"], cname
        ratio = "z.ratio" if ref["ddf"] == "asymptotic" else "t.ratio"
        assert_columns(table, c["table"], ["estimate", "SE", "df", ratio, "p.value"])
        assert str(got) == c["text"] + "\n", cname


def test_kenward_roger_uses_the_adjusted_covariance():
    """KR's SEs come from the adjusted covariance (larger than vcov's), as emmeans takes them."""
    ref = load_ref("extra_mlsub_kr")
    fit = fit_for(ref)
    kr = lmmpy.emmeans(fit, "denomina | sex", ddf="kenward-roger").to_frame()
    sat = lmmpy.emmeans(fit, "denomina | sex", ddf="satterthwaite").to_frame()
    assert np.allclose(kr["emmean"], sat["emmean"])
    assert np.all(kr["SE"].to_numpy() > sat["SE"].to_numpy())


def test_asymptotic_names_and_infinite_df():
    fit = fit_for(load_ref("extra_mlbook2_denomina"))
    e = lmmpy.emmeans(fit, "denomina", ddf="asymptotic")
    frame = e.to_frame()
    assert {"asymp.LCL", "asymp.UCL"} <= set(frame.columns) and np.isinf(frame["df"]).all()
    half = (frame["asymp.UCL"] - frame["emmean"]) / frame["SE"]
    assert np.allclose(half, 1.959963984540054)
    assert "z.ratio" in e.pairs().to_frame().columns
    narrow = lmmpy.emmeans(fit, "denomina", ddf="asymptotic", level=0.5).to_frame()
    assert np.allclose((narrow["asymp.UCL"] - narrow["emmean"]) / narrow["SE"], 0.6744897501960817)


def test_adjustments_order_and_bounds():
    """Within a family: none <= holm <= bonferroni, fdr <= holm, and all within [0, 1]."""
    fit = fit_for(load_ref("extra_mlbook2_denomina"))
    e = lmmpy.emmeans(fit, "denomina")
    p = {a: e.pairs(adjust=a).to_frame()["p.value"].to_numpy() for a in ("none", "holm", "bonferroni", "fdr", "sidak")}
    assert np.all(p["none"] <= p["holm"] + 1e-15) and np.all(p["holm"] <= p["bonferroni"] + 1e-15)
    assert np.all(p["fdr"] <= p["holm"] + 1e-15) and np.all(p["sidak"] <= p["bonferroni"] + 1e-15)
    assert all(np.all((v >= 0) & (v <= 1)) for v in p.values())


def test_custom_contrast_and_tukey_changed_to_sidak():
    fit = fit_for(load_ref("extra_mlbook2_denomina"))
    e = lmmpy.emmeans(fit, "denomina")
    emm = e.to_frame()["emmean"].to_numpy()
    c = e.contrast({"1 vs 2-5": [1, -0.25, -0.25, -0.25, -0.25]})
    table = c.to_frame()
    assert table["contrast"].tolist() == ["1 vs 2-5"]
    assert np.isclose(table["estimate"].iloc[0], emm[0] - emm[1:].mean())
    assert np.isclose(
        table["p.value"].iloc[0], 2 * __import__("scipy").stats.t.sf(abs(table["t.ratio"].iloc[0]), table["df"].iloc[0])
    )
    eff = e.contrast("eff", adjust="tukey")
    assert 'changed to "sidak"' in str(eff)


def test_printing_and_html():
    fit = fit_for(load_ref("extra_mlbook2_denomina"))
    e = lmmpy.emmeans(fit, "denomina")

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.th, self.in_th = [], False

        def handle_starttag(self, tag, attrs):
            self.in_th = tag == "th"

        def handle_data(self, data):
            if self.in_th and data.strip():
                self.th.append(data.strip())

    for obj, cols in (
        (e, ["denomina", "emmean", "SE", "df", "lower.CL", "upper.CL"]),
        (e.pairs(), ["contrast", "estimate", "p.value"]),
    ):
        parser = Cells()
        parser.feed(obj._repr_html_())
        assert set(cols) <= set(parser.th)
    assert "Results are averaged over the levels of: sex" in str(e)
    assert repr(e) == str(e)


def test_bad_input_is_a_clear_error():
    fit = fit_for(load_ref("extra_mlbook2_denomina"))
    with pytest.raises(LmmError, match="not a variable of the fixed part"):
        lmmpy.emmeans(fit, "nope")
    with pytest.raises(LmmError, match="ddf"):
        lmmpy.emmeans(fit, "sex", ddf="containment")
    with pytest.raises(LmmError, match="specs"):
        lmmpy.emmeans(fit, "")
    with pytest.raises(LmmError, match="at"):
        lmmpy.emmeans(fit, "sex", at={"denomina": ["9"]})
    with pytest.raises(LmmError, match="numbers"):
        lmmpy.emmeans(fit, "sex", at={"IQ_verb": ["high"]})
    with pytest.raises(LmmError, match="level"):
        lmmpy.emmeans(fit, "sex", level=95)
    e = lmmpy.emmeans(fit, "sex")
    with pytest.raises(LmmError, match="adjust"):
        e.pairs(adjust="scheffe")
    with pytest.raises(LmmError, match="give adjust"):
        e.contrast("trt.vs.ctrl")
    with pytest.raises(LmmError, match="coefficients"):
        e.contrast({"x": [1, -1, 0]})
    ml = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy"), REML=False)
    with pytest.raises(LmmError, match="REML"):
        lmmpy.emmeans(ml, "Days", ddf="kenward-roger")


def test_numeric_covariate_in_specs_and_grid_mean():
    """A numeric covariate sits at its mean over the fitting rows; with at= it is a grid variable."""
    d = lmmpy.datasets.load("sleepstudy")
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d)
    one = lmmpy.emmeans(fit, "Days").to_frame()
    beta = fit.fixef.to_numpy()
    assert np.isclose(one["Days"].iloc[0], d["Days"].mean())
    assert np.isclose(one["emmean"].iloc[0], beta[0] + beta[1] * d["Days"].mean())
    assert np.isclose(
        one["SE"].iloc[0] ** 2, np.array([1, d["Days"].mean()]) @ fit.vcov.to_numpy() @ np.array([1, d["Days"].mean()])
    )
    at = lmmpy.emmeans(fit, "Days", at={"Days": [0, 9]}).to_frame()
    assert np.allclose(at["emmean"], [beta[0], beta[0] + 9 * beta[1]])


class _Family:
    """The two functions of a GLMM family that the back-transform reads (R's names)."""

    def __init__(self, family, link):
        from scipy import special, stats

        self.family, self.link = family, link
        self.linkinv, self.mu_eta = {
            "logit": (special.expit, lambda e: special.expit(e) * (1 - special.expit(e))),
            "probit": (stats.norm.cdf, stats.norm.pdf),
            "log": (np.exp, np.exp),
        }[link]


GLMM = sorted(p.stem for p in REF.glob("extra_glmm_*.json"))


@pytest.mark.parametrize("name", GLMM)
def test_back_transform_to_the_response_scale_matches_emmeans(name):
    """emmeans' type = "response" from its link-scale table (R's numbers, no lmmpy.glmer)."""
    from lmmpy.inference.emm_format import emm_text
    from lmmpy.inference.response_scale import back_transform, response_name

    ref = load_ref(name)
    fam = _Family(ref["family"], ref["link"])
    link, resp = pd.DataFrame(ref["emmeans_link"]), pd.DataFrame(ref["emmeans_response"])
    est, se, lo, hi = back_transform(
        link["emmean"], link["SE"], link["asymp.LCL"], link["asymp.UCL"], fam.linkinv, fam.mu_eta
    )
    name_resp = response_name(ref["family"])
    for got, col in ((est, name_resp), (se, "SE"), (lo, "asymp.LCL"), (hi, "asymp.UCL")):
        np.testing.assert_allclose(got, resp[col].to_numpy(float), rtol=1e-10)
    frame = resp.copy()
    frame["df"] = np.inf
    # the models' factors other than the specs'
    notes = ["Results are averaged over the levels of: Gender, situ"] if ref["dataset"] == "VerbAgg" else []
    notes += ["Confidence level used: 0.95", f"Intervals are back-transformed from the {ref['link']} scale"]
    assert emm_text(frame, name_resp, [], notes) == ref["emmeans_response_text"] + "\n"
