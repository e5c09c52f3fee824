"""Prior weights, offsets and rank-deficient X against lme4 (tests/reference/robust, made by
make_refs.R there): criterion, estimates, fitted values, Pearson residuals and summary text."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.formula.design import RankDeficientWarning

DIR = Path(__file__).parent / "reference" / "robust"
SPEC = pd.read_csv(DIR / "models.tsv", sep="\t")
IDS = list(SPEC["id"])


def setup(mid):
    s = SPEC.set_index("id").loc[mid]
    ref = json.loads((DIR / f"{mid}.json").read_text())
    d = lmmpy.datasets.load(s["dataset"])
    env = {c: d[c].astype(float) for c in d.columns if d[c].dtype.kind in "if"}

    def r_expr(e):  # the R expressions of models.tsv are also Python (R's %% is Python's %)
        return None if not isinstance(e, str) else eval(e.replace("%%", "%"), {}, env).to_numpy()

    for f in s["factors"].split(","):
        d[f] = d[f].astype(str).astype("category")
    kw = dict(REML=bool(s["REML"]), weights=r_expr(s["weights"]), offset=r_expr(s["offset"]), data_name="d")
    return s, ref, d, kw


def fit(mid, at_lme4_theta=False):
    s, ref, d, kw = setup(mid)
    if at_lme4_theta:
        kw.update(start=np.atleast_1d(ref["theta"]), optimizer=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        return lmmpy.lmer(s["formula"], d, **kw), ref


@pytest.mark.parametrize("mid", IDS)
def test_at_lme4_theta(mid):
    f, ref = fit(mid, at_lme4_theta=True)
    assert f.objective == pytest.approx(ref["criterion"], rel=1e-10)
    assert f.sigma == pytest.approx(ref["sigma"], rel=1e-8)
    for k, v in ref["fixef"].items():
        assert f.fixef[k] == pytest.approx(v, rel=1e-8)
        assert f.se[k] == pytest.approx(ref["se"][k], rel=1e-7)
    assert np.allclose(f.fitted.to_numpy()[:20], ref["fitted_head"], rtol=1e-10)
    assert np.allclose(f.residuals().to_numpy()[:20], ref["resid_head"], rtol=1e-8, atol=1e-9)
    assert np.allclose(f.residuals("pearson").to_numpy()[:20], ref["pearson_head"], rtol=1e-8, atol=1e-9)
    for r in ref["ranef"]:
        ours = [f.ranef[r["group"]].loc[lv, t] for t, lv in zip(r["term"], r["level"])]
        sds = [f.ranef_sd[r["group"]].loc[lv, t] for t, lv in zip(r["term"], r["level"])]
        assert np.allclose(ours, r["value"], rtol=1e-6, atol=1e-9)
        assert np.allclose(sds, r["cond_sd"], rtol=1e-6)


@pytest.mark.parametrize("mid", IDS)
def test_fit_reaches_lme4(mid):
    f, ref = fit(mid)
    assert f.objective <= ref["criterion"] + 1e-3
    for k, v in ref["fixef"].items():
        assert f.fixef[k] == pytest.approx(v, rel=1e-3)
    assert f.aic == pytest.approx(ref["AIC"], abs=2e-3)
    assert f.npar == ref["df"]


@pytest.mark.parametrize("mid", IDS)
def test_summary_text_at_lme4_theta(mid):
    f, ref = fit(mid, at_lme4_theta=True)

    def norm(text):  # make_refs.R always passes weights and offset, so lme4 always names them
        return [ln for ln in text.splitlines() if not re.match(r"(ICC \(|Weights:| Offset:)", ln)]

    assert norm(str(f.summary())) == norm(ref["summary_text"])


def test_rank_deficient_columns_dropped_with_warning():
    d = lmmpy.datasets.load("sleepstudy")
    with pytest.warns(RankDeficientWarning, match=r"dropping 1 column / coefficient \(I\(2 \* Days\)\)"):
        f = lmmpy.lmer("Reaction ~ Days + I(2 * Days) + (1 | Subject)", d)
    assert list(f.fixef.index) == ["(Intercept)", "Days"]
    assert f.design.dropped_columns == ["I(2 * Days)"]
    assert "fit warnings:\nfixed-effect model matrix is rank deficient so dropping 1 column" in str(f.summary())


def test_weights_by_column_name_and_errors():
    d = lmmpy.datasets.load("sleepstudy").assign(w=lambda x: 1 + x["Days"] / 3)
    f = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, weights="w")
    g = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, weights=d["w"].to_numpy())
    assert f.objective == pytest.approx(g.objective)
    assert "Weights: w" in str(f.summary())
    with pytest.raises(lmmpy.DataError, match="weights must be positive: 1 are negative"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d.assign(w=np.where(d.index == 3, -1.0, 1.0)), weights="w")
    with pytest.raises(lmmpy.DataError, match="weights has 3 values but the data have 180 rows"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d, weights=[1, 2, 3])
    with pytest.raises(lmmpy.DataError, match="unknown weights column 'nope'"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d, weights="nope")
    with pytest.raises(lmmpy.DataError, match="offset must be numeric"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d, offset="Subject")


def test_missing_weights_drop_rows():
    d = lmmpy.datasets.load("sleepstudy").assign(w=1.0)
    d.loc[[1, 2], "w"] = np.nan
    f = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d, weights="w")
    assert f.nobs == 178 and f.n_dropped == 2


def test_offset_equals_shifted_response():
    d = lmmpy.datasets.load("sleepstudy")
    f = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d, offset=3 * d["Days"].to_numpy())
    g = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d.assign(Reaction=d["Reaction"] - 3 * d["Days"]))
    assert f.fixef["Days"] == pytest.approx(g.fixef["Days"], rel=1e-6)
    assert f.objective == pytest.approx(g.objective, rel=1e-9)
    assert np.allclose(f.fitted, g.fitted + 3 * d["Days"].to_numpy(), rtol=1e-6)
    assert " Offset: offset" in str(f.summary())
