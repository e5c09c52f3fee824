"""lmmpy.pbmodcomp against pbkrtest's PBmodcomp (tests/reference/toolkit/pbmodcomp_sleepstudy.json and
_ref.csv, made by pbmodcomp_reference.R beside them): does sleepstudy need a quadratic trend in Days?

The chi-square part is deterministic and must match R to the digit.  The bootstrap part is Monte
Carlo on both sides (R: 3000 draws, seed 20261201; here NSIM draws, seed 20261201 -- a fixed seed
so that the test is reproducible, not one picked to pass: numpy's and R's generators differ, so
the two bootstrap samples are independent).  The tolerances follow from that:

- p-value: p_PB estimates a tail probability p (about 0.21) from n draws with standard error
  sqrt(p (1 - p) / n); the difference of two independent estimates has standard error
  sqrt(p (1 - p) (1/NSIM + 1/3000)) = 0.041 for NSIM = 100, and we allow 4 of them (a correct
  implementation fails with probability about 6e-5).
- mean of the reference distribution: standard error sqrt(var (1/NSIM + 1/3000)) from R's
  variance, 4 of them.
- the whole distribution: a two-sample Kolmogorov-Smirnov test of our draws against R's 3000
  must not reject at the 0.001 level.
NSIM is small to keep the test fast (2 x NSIM refits of a 180-row model).
"""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmmpy

REF = Path(__file__).parent.parent / "reference" / "toolkit"
NSIM = 100
SEED = 20261201


@pytest.fixture(scope="module")
def ref():
    out = json.loads((REF / "pbmodcomp_sleepstudy.json").read_text())
    out["draws"] = pd.read_csv(REF / "pbmodcomp_sleepstudy_ref.csv")["stat"].to_numpy()
    return out


@pytest.fixture(scope="module")
def fits():
    d = lmmpy.datasets.load("sleepstudy")
    # REML fits, as the R script passes them: pbmodcomp refits both by ML, as PBmodcomp does
    return lmmpy.lmer("Reaction ~ Days + I(Days^2) + (Days | Subject)", d), lmmpy.lmer(
        "Reaction ~ Days + (Days | Subject)", d
    )


@pytest.fixture(scope="module")
def result(fits):
    return lmmpy.pbmodcomp(*fits, nsim=NSIM, seed=SEED, progress=False)


def test_chisq_lrt_matches_pbkrtest(result, ref):
    assert result.stat == pytest.approx(ref["LRT_stat"], abs=1e-5)
    assert result.df == ref["LRT_df"]
    assert result.p_chisq == pytest.approx(ref["LRT_p"], abs=1e-6)


def test_bootstrap_p_value_within_monte_carlo_error(result, ref):
    p = ref["PB_p"]
    se = np.sqrt(p * (1 - p) * (1 / NSIM + 1 / ref["nsim"]))
    assert abs(result.p_pb - p) <= 4 * se, (result.p_pb, p, se)
    # the p-value is pbkrtest's formula of the draws
    pos = result.ref[result.ref > 0]
    assert result.p_pb == (1 + np.sum(pos > result.stat)) / (1 + pos.size)
    assert result.nsim == NSIM and result.failed == 0


def test_reference_distribution_matches_pbkrtests(result, ref):
    ours = result.ref[result.ref > 0]
    se = np.sqrt(ref["ref_var"] * (1 / ours.size + 1 / ref["npos"]))
    assert abs(ours.mean() - ref["ref_mean"]) <= 4 * se
    assert stats.ks_2samp(ours, ref["draws"]).pvalue > 1e-3


def test_printed_as_pbkrtest(result, ref):
    text = str(result)
    lines = text.splitlines()
    assert re.fullmatch(
        rf"Bootstrap test; time: \d+\.\d\d sec; samples: {NSIM}; extremes: {result.n_extreme};", lines[0]
    )
    assert lines[1] == ref["printed"][1]  # large : formula
    # pbkrtest 0.5.2 drops the "small : " label (it strips the formula's class before printing);
    # lmmpy keeps the label
    assert lines[2] == "small : " + ref["printed"][2]
    assert lines[3] == ref["printed"][3]  # column header
    assert lines[4] == ref["printed"][4]  # the chi-square line, to the digit
    # the bootstrap line: R's layout (the same columns), our own p-value at 4 digits
    assert len(lines[5]) == len(ref["printed"][5]) and lines[5].split()[:2] == ["PBtest", "1.6577"]
    assert float(lines[5].split()[2]) == pytest.approx(result.p_pb, abs=5e-5)
    frame = result.to_frame()
    assert list(frame.index) == ["LRT", "PBtest"] and list(frame.columns) == ["stat", "df", "p.value"]
    assert np.isnan(frame.loc["PBtest", "df"]) and frame.loc["PBtest", "p.value"] == result.p_pb


def test_reproducible_with_a_seed_and_the_same_in_workers(fits):
    a = lmmpy.pbmodcomp(*fits, nsim=4, seed=7, progress=False)
    b = lmmpy.pbmodcomp(*fits, nsim=4, seed=7, progress=False)
    np.testing.assert_array_equal(a.ref, b.ref)
    # the responses are drawn before the refits, so worker processes refit the same ones
    c = lmmpy.pbmodcomp(*fits, nsim=4, seed=7, n_jobs=2, progress=False)
    np.testing.assert_array_equal(a.ref, c.ref)


def test_bad_input(fits):
    large, small = fits
    with pytest.raises(lmmpy.LmmError, match="the large model must have more"):
        lmmpy.pbmodcomp(small, large, nsim=2, progress=False)
    other = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy").iloc[:100])
    with pytest.raises(lmmpy.LmmError, match="different numbers of observations"):
        lmmpy.pbmodcomp(large, other, nsim=2, progress=False)
    with pytest.raises(lmmpy.LmmError, match="nsim"):
        lmmpy.pbmodcomp(large, small, nsim=0)
    with pytest.raises(lmmpy.LmmError, match="models fitted by lmer"):
        lmmpy.pbmodcomp(large, "small")
