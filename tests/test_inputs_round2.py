"""Issue 12: arguments, inference and the command line give a clear lmmpy error or lme4's
answer, never a silent wrong answer or a foreign traceback.  lme4's numbers and messages are
in tests/reference/inputs/inputs.json, made by make_refs.R there (lme4 1.1-31).

Tolerances against lme4 (optimised fits, not at lme4's theta): criterion within 1e-6 (a Series
matched by position instead misses it by ~4), fixed effects and predictions 1e-6 relative,
anova's columns 1e-7 relative and its printed rows identical."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy import DataError, LmmError
from lmmpy.cli import main

REF = json.loads((Path(__file__).parent / "reference" / "inputs" / "inputs.json").read_text())
F = "Reaction ~ Days + (1 | Subject)"
SLOPES = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return lmmpy.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def m1(sleep):
    return lmmpy.lmer(SLOPES, sleep)


# -- 1. boolean arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["no", "False", "TRUE", None, 1, 0, 1.0, [True], np.array([True])], ids=repr)
def test_reml_accepts_only_booleans(sleep, bad):
    # lme4 refuses "no" and NULL; lmmpy refuses every non-boolean (REML="no" fitted REML)
    with pytest.raises(LmmError, match="REML must be True or False"):
        lmmpy.lmer(F, sleep, REML=bad)
    with pytest.raises(LmmError, match="REML must be True or False"):
        lmmpy.mk_lmer_devfun(lmmpy.lformula(F, sleep), REML=bad)


def test_numpy_booleans_are_booleans(sleep):
    assert lmmpy.lmer(F, sleep, REML=np.False_).REML is False
    assert lmmpy.lmer(F, sleep, REML=np.True_).REML is True


@pytest.mark.parametrize("switch", ["check_conv", "restart_edge", "fallback_em"])
def test_control_switches_accept_only_booleans(sleep, switch):
    with pytest.raises(LmmError, match=f"{switch} must be True or False, not 'no'"):
        lmmpy.lmer(F, sleep, control={switch: "no"})


def test_other_boolean_arguments(sleep, m1):
    with pytest.raises(LmmError, match="allow_new_levels must be True or False"):
        m1.predict(sleep.head(), allow_new_levels="yes")
    with pytest.raises(LmmError, match="refit must be True or False"):
        lmmpy.anova(m1, m1, refit="no")
    with pytest.raises(LmmError, match="REML must be True or False"):
        m1.refit(sleep.Reaction, REML="no")
    with pytest.raises(LmmError, match="progress must be True or False"):
        m1.confint(method="boot", nsim=2, progress="yes")


# -- 2. anova across data ----------------------------------------------------------------------


def test_anova_refuses_another_response(sleep, m1):
    d2 = sleep.assign(Reaction=sleep.Reaction.to_numpy()[::-1])  # same rows, another response
    with pytest.raises(LmmError, match="not fitted to the same data .the responses differ at 180 of 180"):
        lmmpy.anova(lmmpy.lmer(F, d2), m1)
    assert REF["error_anova_shuffled"] == "all models must be fit to the same data object"


def test_anova_refuses_other_rows_and_sizes(sleep, m1):
    with pytest.raises(LmmError, match="not all fitted to the same size of dataset: .179, 180. observations"):
        lmmpy.anova(lmmpy.lmer(F, sleep.drop(index=0)), m1)
    assert REF["error_anova_size"] == "models were not all fitted to the same size of dataset"
    a, b = lmmpy.lmer(F, sleep.drop(index=0)), lmmpy.lmer(SLOPES, sleep.drop(index=1))
    with pytest.raises(LmmError, match="not fitted to the same data .different rows of the data"):
        lmmpy.anova(a, b)
    with pytest.raises(LmmError, match="argument 2 is a str"):
        lmmpy.anova(m1, "m1")


def test_anova_of_the_same_rows_in_another_order_is_the_test(sleep, m1):
    shuffled = sleep.sample(frac=1, random_state=5)
    same = lmmpy.anova(lmmpy.lmer(F, sleep), m1)
    other = lmmpy.anova(lmmpy.lmer(F, shuffled), m1)
    assert other["Chisq"].iloc[1] == pytest.approx(same["Chisq"].iloc[1], rel=1e-6)


def test_anova_of_a_model_with_itself_is_lme4s_table(m1):
    ref = REF["anova_m1_m1"]
    table = lmmpy.anova(m1, m1)
    for col in ("npar", "AIC", "BIC", "logLik", "deviance"):
        assert np.allclose(table[col].to_numpy(dtype=float), ref[col], rtol=1e-7), col
    assert table["Chisq"].iloc[1] == ref["Chisq"] and table["Df"].iloc[1] == ref["Df"]
    assert np.isnan(table["Pr(>Chisq)"]).all()
    ours, theirs = str(table).splitlines(), ref["printed"]
    # the same table but for the model names (lme4: MODEL1, MODEL2, as it cannot name them)
    # and the data's name
    assert ours[4].lstrip() == theirs[4].lstrip()
    for a, b in zip(ours[5:7], theirs[5:7]):
        assert re.sub(r"^\S+", "", a) == re.sub(r"^\S+", "", b)


# -- 3. weights and offset as a pandas Series ---------------------------------------------------


@pytest.mark.parametrize("role, make", [("weights", lambda i: 1 + (i % 4) / 2), ("offset", lambda i: 5 * np.sin(i))])
def test_series_weights_and_offset_are_matched_by_index(sleep, role, make):
    values = make(np.arange(len(sleep)))
    series = pd.Series(values, index=sleep.index).iloc[np.random.default_rng(12).permutation(len(sleep))]
    before_data, before_series = sleep.copy(deep=True), series.copy(deep=True)
    fit = lmmpy.lmer(F, sleep, **{role: series})
    assert fit.objective == pytest.approx(REF[f"{role}_criterion"], abs=1e-6)
    for k, v in REF[f"{role}_fixef"].items():
        assert fit.fixef[k] == pytest.approx(v, rel=1e-6)
    # an array stays positional: the same fit
    assert lmmpy.lmer(F, sleep, **{role: values}).objective == pytest.approx(fit.objective, rel=1e-12)
    pd.testing.assert_frame_equal(sleep, before_data)
    pd.testing.assert_series_equal(series, before_series)


@pytest.mark.parametrize("role", ["weights", "offset"])
def test_series_with_another_index_is_refused(sleep, role):
    d = sleep.set_axis([f"r{i}" for i in range(len(sleep))])
    with pytest.raises(DataError, match=f"{role} is a pandas Series whose index does not match the data's index"):
        lmmpy.lmer(F, d, **{role: pd.Series(np.ones(len(d)))})


# -- 4. more fixed effects than observations ----------------------------------------------------


@pytest.mark.parametrize("reml", [True, False])
def test_more_fixed_effects_than_observations(sleep, reml):
    rng = np.random.default_rng(3)
    wide = sleep.head(20).assign(**{f"x{k}": rng.normal(size=20) for k in range(25)})
    formula = "Reaction ~ " + " + ".join(f"x{k}" for k in range(25)) + " + (1 | Subject)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmpy.RankDeficientWarning)
        # lme4: "objective in x0 returns NA" (REML; under ML a fit with sigma ~ 1e-13)
        with pytest.raises(
            DataError,
            match=r"has 20 columns of full rank \(after dropping 6 aliased\) for 20 "
            "observations: there must be fewer fixed effects than observations",
        ):
            lmmpy.lmer(formula, wide, REML=reml)
        square = "Reaction ~ " + " + ".join(f"x{k}" for k in range(19)) + " + (1 | Subject)"
        with pytest.raises(DataError, match="has 20 columns for 20 observations"):
            lmmpy.lmer(square, wide, REML=reml)
    assert REF["error_wide_reml"] == "objective in x0 returns NA"


# -- 5. predict with missing values -------------------------------------------------------------


def test_predict_with_a_missing_covariate_is_nan_for_that_row(sleep, m1):
    nd = sleep.head(3).copy()
    nd.loc[1, "Days"] = np.nan
    for re_form, ref in ((None, REF["predict_na_covariate"]), ("~0", REF["predict_na_covariate_population"])):
        p = m1.predict(nd, re_form=re_form)
        assert len(p) == 3 and p.index.equals(nd.index) and np.isnan(p.iloc[1])
        assert np.allclose(p.to_numpy()[[0, 2]], np.array(ref, dtype=float)[[0, 2]], rtol=1e-6)
        # the other rows are predicted as without the incomplete one
        assert np.array_equal(p.to_numpy()[[0, 2]], m1.predict(nd.iloc[[0, 2]], re_form=re_form).to_numpy())


def test_predict_with_a_missing_categorical_covariate(sleep):
    d = sleep.assign(half=np.where(sleep.Days < 5, "early", "late"))
    fit = lmmpy.lmer("Reaction ~ half + (1 | Subject)", d)
    nd = d.iloc[[0, 7, 8]].copy()
    nd.loc[7, "half"] = None
    p = fit.predict(nd)
    assert np.isnan(p.loc[7]) and np.array_equal(p.drop(7).to_numpy(), fit.predict(nd.drop(7)).to_numpy())


def test_predict_with_a_missing_grouping_value(sleep, m1):
    nd = sleep.head(3).copy()
    nd.loc[1, "Subject"] = np.nan
    assert REF["error_na_group"].startswith("NAs are not allowed in prediction data for grouping variables")
    with pytest.raises(
        DataError,
        match="missing values in the grouping column.s. 'Subject' of the new data; "
        "as in lme4, they are allowed only with allow_new_levels=True",
    ):
        m1.predict(nd)
    p = m1.predict(nd, allow_new_levels=True)
    assert np.allclose(p, REF["predict_na_group_allow_new"], rtol=1e-6)


# -- 6. numeric arguments of simulate, confint and bootstrap ------------------------------------


@pytest.mark.parametrize("nsim", [-1, 0, 1.5, True, "2"], ids=repr)
def test_simulate_nsim(m1, nsim):
    # lme4: "(nsim <- as.integer(nsim[1])) > 0 is not TRUE" for -1 and 0
    with pytest.raises(LmmError, match="nsim must be an integer >= 1"):
        m1.simulate(nsim)


def test_simulate_seed(m1):
    with pytest.raises(LmmError, match="seed must be None, a non-negative integer"):
        m1.simulate(2, seed="x")
    assert m1.simulate(2, seed=np.int64(4)).shape == (180, 2)


@pytest.mark.parametrize("level", [1.5, 1, 0, -0.05, np.nan, "0.95", None, True], ids=repr)
@pytest.mark.parametrize("method", ["wald", "profile", "boot"])
def test_confint_level(m1, method, level):
    # lme4: NaN intervals and a "NaNs produced" warning for level = 1.5
    with pytest.raises(LmmError, match="level must be a number with 0 < level < 1"):
        m1.confint(method=method, level=level)


def test_bootstrap_arguments(m1):
    for kw, name in ((dict(nsim=0), "nsim"), (dict(nsim=2.5), "nsim"), (dict(nsim=2, n_jobs=0), "n_jobs")):
        with pytest.raises(LmmError, match=f"{name} must be an integer >= 1"):
            m1.confint(method="boot", **kw)
    with pytest.raises(LmmError, match="confint.method='wald'. takes no nsim"):
        m1.confint(nsim=10)
    with pytest.raises(LmmError, match="takes nsim, seed, n_jobs and progress, not nsims"):
        m1.confint(method="boot", nsims=10)
    with pytest.raises(LmmError, match="level must be"):
        m1.profile(level=99)


# -- 7. messages that said the wrong thing ------------------------------------------------------


def test_empty_data_says_it_has_no_rows(sleep):
    assert REF["error_empty"] == "0 (non-NA) cases"
    with pytest.raises(DataError, match="^the data have no rows$"):
        lmmpy.lmer(F, sleep.iloc[:0])
    with pytest.raises(DataError, match="no observations left after dropping rows with missing values"):
        lmmpy.lmer(F, sleep.assign(Reaction=np.nan))


def test_one_row_says_what_lme4_says(sleep):
    msg = REF["error_one_row"]
    assert msg == "grouping factors must have > 1 sampled level"
    with pytest.raises(DataError, match=f"^the data have 1 observation: {msg}$"):
        lmmpy.lmer(F, sleep.iloc[:1])
    d = sleep.head(2).copy()
    d.loc[1, "Reaction"] = np.nan
    with pytest.raises(DataError, match=f"1 observation after dropping rows with missing values: {msg}"):
        lmmpy.lmer(F, d)


def test_cli_missing_file_is_not_called_a_data_set(capsys, tmp_path):
    missing = str(tmp_path / "x.csv")
    for name in ("./x.csv", missing, "x.CSV"):
        assert main(["fit", F, "--data", name]) == 2
        err = capsys.readouterr().err
        assert err == f"lmmpy: error: the file {name!r} does not exist\n"
    assert main(["fit", F, "--data", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmmpy: error: no bundled data set 'nope'; the bundled ones are: Dyestuff")
    with pytest.raises(LmmError, match="that names a file; read it with pandas.read_csv"):
        lmmpy.datasets.load("data/x.csv")


# -- 8. the command line never shows a foreign traceback ----------------------------------------


def _one_error_line(err):
    lines = err.splitlines()
    return len(lines) == 1 and lines[0].startswith("lmmpy: error: ") and "Traceback" not in err


def test_cli_empty_csv_and_directory(capsys, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["fit", F, "--data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert _one_error_line(err) and "is empty" in err
    header_only = tmp_path / "header.csv"
    header_only.write_text("Reaction,Days,Subject\n")
    assert main(["fit", F, "--data", str(header_only)]) == 2
    assert capsys.readouterr().err == "lmmpy: error: the data have no rows\n"
    assert main(["fit", F, "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert _one_error_line(err) and "is a directory, not a CSV file" in err


def test_cli_unexpected_errors_are_one_line_and_traceback_shows_them(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr("lmmpy.cli.lmer", broken)
    assert main(["fit", F, "--data", "sleepstudy"]) == 1
    err = capsys.readouterr().err
    assert _one_error_line(err) and "RuntimeError: something unforeseen (run with --traceback" in err
    assert main(["fit", F, "--data", "sleepstudy", "--traceback"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "RuntimeError: something" in err


def test_cli_traceback_flag_on_an_lmm_error(capsys):
    assert main(["fit", "Reaction ~ Dayz + (1 | Subject)", "--data", "sleepstudy", "--traceback"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "DataError: unknown column 'Dayz'" in err


# -- 9. MixedML ---------------------------------------------------------------------------------


def test_mixedml_refuses_a_classifier(sleep):
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    for est in (LogisticRegression(), DecisionTreeClassifier()):
        with pytest.raises(LmmError, match=f"must be a regressor; {type(est).__name__} is a classifier"):
            lmmpy.MixedML(est).fit(sleep[["Days"]], sleep.Reaction, groups=sleep.Subject)
        with pytest.raises(LmmError, match="is a classifier"):
            lmmpy.MixedML.from_formula(SLOPES, sleep, estimator=est)


def test_mixedml_without_groups_warns(sleep):
    with pytest.warns(UserWarning, match="without groups fits no random effects"):
        m = lmmpy.MixedML().fit(sleep[["Days"]], sleep.Reaction)
    assert m.ranef_ == {}


# -- the last foreign exceptions of argument handling ---------------------------------------------


def test_a_control_of_another_type_is_an_lmm_error():
    with pytest.raises(lmmpy.LmmError, match="control must be an LmerControl or a dict, not list"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy"), control=[1])


def test_an_unknown_residual_type_is_an_lmm_error():
    fit = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", lmmpy.datasets.load("sleepstudy"))
    with pytest.raises(lmmpy.LmmError, match="'response' or 'pearson', not 'deviance'"):
        fit.residuals(type="deviance")


def test_a_start_of_the_wrong_length_is_an_lmm_error():
    with pytest.raises(lmmpy.LmmError, match="theta has length 2, the model needs 3"):
        lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"), start=[1.0, 0.0])
