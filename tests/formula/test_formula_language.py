"""R's formula language in full, against lme4: the response as an R expression, %in%,
comparisons and logic, named arguments, poly/scale/factor/cut/ifelse/pmin/pmax/as.numeric,
offset() terms, the caller's variables, comments, non-ASCII names, duplicated columns, dates
and very long formulas.

lme4's numbers: tests/reference/formula_language/refs.json, made by make_refs.R beside it
(lme4 1.1-31) from sleepstudy and columns computed from it, built here the same way.
Tolerances: the REML criterion within 1e-6 (lmmpy may be lower: it reaches the optimum as
closely as lme4 or more), fixed effects within 1e-5 relative, theta within 1e-4.
"""

import datetime
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmmpy
from lmmpy import DataError, FormulaError, LmmError
from lmmpy.formula.bars import parse_formula
from lmmpy.formula.parser import deparse_lines

REFS = json.loads((Path(__file__).parents[1] / "reference" / "formula_language" / "refs.json").read_text())
SLEEP_CASES = [
    "lhs_minus",
    "lhs_log_minus",
    "lhs_divide",
    "lhs_times",
    "lhs_plus",
    "in_operator",
    "dotted_in_call",
    "offset_in_formula",
    "compare_gt",
    "compare_eq",
    "logic",
    "logic_not",
    "poly_raw",
    "poly_raw_T",
    "poly_orthogonal",
    "factor_levels",
    "ifelse_character",
    "ifelse_numeric",
    "cut_n",
    "cut_breaks",
    "pmin_pmax",
    "as_numeric",
    "as_factor",
    "scale",
    "scale_center_only",
    "comment",
    "caller_variable",
]


@pytest.fixture(scope="module")
def sleep():
    d = lmmpy.datasets.load("sleepstudy")
    d["react.time"] = d["Reaction"]  # as make_refs.R
    d["days.1"] = d["Days"] + 1
    return d


def fit(formula, data, **kw):
    """lmer without its warnings; the formula sees the variables of fit's caller, as R's
    formula sees those of the code that wrote it."""
    kw.setdefault("env", {**sys._getframe(1).f_globals, **sys._getframe(1).f_locals})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmmpy.lmer(formula, data, **kw)


def check_against_lme4(m, ref, crit_tol=1e-6, fixef_rtol=1e-5, theta_tol=1e-4):
    assert list(m.fixef.index) == ref["fixef_names"]
    assert m.optsum.fmin <= ref["remlcrit"] + crit_tol
    assert m.optsum.fmin == pytest.approx(ref["remlcrit"], abs=max(crit_tol, 1e-8 * abs(ref["remlcrit"])))
    lme4 = np.array([ref["fixef"][n] for n in ref["fixef_names"]])
    assert np.allclose(m.fixef.to_numpy(), lme4, rtol=fixef_rtol, atol=1e-8)
    assert np.allclose(m.theta, np.atleast_1d(ref["theta"]), atol=theta_tol)


@pytest.mark.parametrize("case", SLEEP_CASES)
def test_fits_as_lme4(case, sleep):
    ref = REFS[case]
    k = 2.5  # noqa: F841 - the caller's variable of I(Days * k), seen through the formula's environment
    before = sleep.copy()
    m = fit(ref["formula"], sleep)
    check_against_lme4(m, ref)
    pd.testing.assert_frame_equal(sleep, before)  # the user's data are never modified
    printed = ref["printed_formula"] if isinstance(ref["printed_formula"], list) else [ref["printed_formula"]]
    assert deparse_lines(m.design.formula.tree) == printed  # the summary's Formula: line, as lme4's


def test_left_hand_side_arithmetic_is_rs(sleep):
    # Reaction - Days: lme4's slope 9.4673, one less than Reaction's 10.4673
    m = fit("Reaction - Days ~ Days + (1 | Subject)", sleep)
    assert m.fixef["Days"] == pytest.approx(REFS["lhs_minus"]["fixef"]["Days"], rel=1e-8)
    assert np.allclose(m.design.y, sleep["Reaction"] - sleep["Days"])
    assert np.allclose(fit("Reaction/1000 ~ Days + (1 | Subject)", sleep).design.y, sleep["Reaction"] / 1000)


def test_in_is_the_interaction(sleep):
    a = fit("Reaction ~ Days %in% Subject + (1 | Subject)", sleep)
    b = fit("Reaction ~ Days:Subject + (1 | Subject)", sleep)
    assert list(a.fixef.index) == list(b.fixef.index)
    assert a.optsum.fmin == pytest.approx(b.optsum.fmin, abs=1e-8)


def test_bar_inside_a_call_is_logical_or(sleep):
    # lme4's findbars mistakes the '|' of I(Days < 2 | Days > 8) for a random-effects bar and
    # fails; R's model.matrix names the column I(Days < 2 | Days > 8)TRUE, and the model is the
    # one lme4 fits with the same column written by De Morgan
    ref = REFS["logic"]
    m = fit(ref["same_as"]["formula"], sleep)
    assert list(m.fixef.index) == ref["same_as"]["fixef_names"]
    assert m.optsum.fmin == pytest.approx(ref["remlcrit"], abs=1e-6)
    assert np.allclose(m.fixef.to_numpy(), [ref["fixef"][n] for n in ref["fixef_names"]], rtol=1e-5)


def test_non_ascii_names(sleep):
    d = pd.DataFrame({"Réaction": sleep["Reaction"], "日数": sleep["Days"], "Sujet": sleep["Subject"]})
    m = fit("Réaction ~ 日数 + (日数 | Sujet)", d)
    check_against_lme4(m, REFS["non_ascii"])
    assert deparse_lines(m.design.formula.tree) == [REFS["non_ascii"]["printed_formula"]]


def test_offset_term_adds_to_the_offset_argument(sleep):
    ref = REFS["offset_both"]
    off = ((sleep["Days"] % 3) * 5).to_numpy()
    m = fit(ref["formula"], sleep, offset=off)
    check_against_lme4(m, ref)
    assert np.allclose(m.design.offset, 20 * np.log(sleep["Days"] + 1) + off)


def test_caller_variables_and_env(sleep):
    ref = REFS["caller_variable"]
    k = 2.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmmpy.lmer(ref["formula"], sleep)  # k: a local variable of this function
    assert k and m.optsum.fmin == pytest.approx(ref["remlcrit"], abs=1e-6)
    # an explicit environment, and the caller's frame through lformula
    m = fit(ref["formula"], sleep, env={"k": 2.5})
    assert m.fixef["I(Days * k)"] == pytest.approx(ref["fixef"]["I(Days * k)"], rel=1e-5)

    def inner():
        k = 5.0  # noqa: F841 - read by the formula, through the caller's frame
        return lmmpy.lformula("Reaction ~ I(Days * k) + (1 | Subject)", sleep)

    assert np.allclose(inner().X[:, 1], 5.0 * sleep["Days"])
    with pytest.raises(FormulaError, match="object 'kk' not found"):
        lmmpy.lmer("Reaction ~ I(Days * kk) + (1 | Subject)", sleep)
    with pytest.raises(LmmError, match="env must be a mapping"):
        lmmpy.lmer("Reaction ~ I(Days * k) + (1 | Subject)", sleep, env=3)


@pytest.mark.parametrize(
    "case", ["poly_orthogonal", "scale", "offset_in_formula", "factor_levels", "caller_variable", "compare_gt"]
)
def test_predictions_on_new_data_as_lme4(case, sleep):
    # poly() and scale() keep the fitting data's coefficients, factor() its levels; offset()
    # terms are evaluated on the new data
    ref = REFS[case]
    k = 2.5  # noqa: F841 - I(Days * k)
    m = fit(ref["formula"], sleep)
    new = pd.DataFrame({"Days": ref["newdata_days"], "Subject": sleep["Subject"].iloc[[0, 0, 0]].to_numpy()})
    assert np.allclose(m.predict(new).to_numpy(), ref["predict_newdata"], rtol=1e-6)


def test_duplicated_column_names_use_the_first_as_r(sleep):
    d = pd.concat([sleep[["Reaction", "Days", "Subject"]], sleep[["Days"]].iloc[::-1].reset_index(drop=True)], axis=1)
    with pytest.warns(UserWarning, match="several columns named 'Days'"):
        m = lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d)
    check_against_lme4(m, REFS["duplicate_column"])


def dated(sleep):
    d = sleep[["Reaction", "Days", "Subject"]].copy()
    d["date"] = [datetime.date(2020, 1, 1) + datetime.timedelta(days=int(x)) for x in sleep["Days"]]
    d["stamp"] = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(sleep["Days"] * 3600, unit="s")
    return d


def test_dates_are_numbers_as_in_r(sleep):
    d = dated(sleep)
    # Date: days since 1970-01-01; POSIXct: seconds since the epoch
    X_date = lmmpy.lformula("Reaction ~ date + (1 | Subject)", d).X[:3, 1]
    X_stamp = lmmpy.lformula("Reaction ~ stamp + (1 | Subject)", d).X[:3, 1]
    assert list(X_date) == REFS["dates_as_numbers"]["date"]
    assert list(X_stamp) == REFS["dates_as_numbers"]["stamp"]
    naive = d.assign(stamp=d["stamp"].dt.tz_localize(None))  # naive datetimes are taken as UTC
    assert list(lmmpy.lformula("Reaction ~ stamp + (1 | Subject)", naive).X[:3, 1]) == X_stamp.tolist()
    check_against_lme4(fit("Reaction ~ date + (1 | Subject)", d), REFS["date_covariate"], crit_tol=1e-5)


def test_posixct_covariate_fits_near_lme4(sleep):
    # seconds since the epoch (1.6e9) beside an intercept: X is ill-conditioned, and lme4 too
    # warns that it failed to converge (max|grad| 0.0022); the estimates agree to 1e-5
    ref = REFS["posixct_covariate"]
    m = fit("Reaction ~ stamp + (1 | Subject)", dated(sleep))
    assert list(m.fixef.index) == ref["fixef_names"]
    assert np.allclose(m.fixef.to_numpy(), [ref["fixef"][n] for n in ref["fixef_names"]], rtol=1e-5)
    assert m.optsum.fmin == pytest.approx(ref["remlcrit"], abs=5e-3)


def test_a_formula_of_thousands_of_terms_fits(sleep):
    # lme4 fails with "C stack usage is too close to the limit"; the repeated term is one term
    assert "C stack" in REFS["long_formula_lme4"]
    m = fit("Reaction ~ " + " + ".join(["Days"] * 2000) + " + (1 | Subject)", sleep)
    check_against_lme4(m, REFS["comment"])  # the model Reaction ~ Days + (1 | Subject)
    assert len(deparse_lines(m.design.formula.tree)) > 100


def test_too_deep_nesting_is_a_formula_error(sleep):
    with pytest.raises(FormulaError, match="nests too deeply"):
        lmmpy.lmer("Reaction ~ " + "(" * 3000 + "Days" + ")" * 3000 + " + (1 | Subject)", sleep)


@pytest.mark.parametrize(
    "formula, error, words",
    [
        ("Reaction ~ nosuchfun(Days) + (1 | Subject)", FormulaError, "unknown function 'nosuchfun'"),
        ("Reaction ~ ordered(Days) + (1 | Subject)", FormulaError, "polynomial contrasts"),
        ("Reaction ~ log(Subject) + (1 | Subject)", FormulaError, "arithmetic on a factor"),
        ("Reaction ~ poly(Days, 12) + (1 | Subject)", FormulaError, "less than the number of unique points"),
        ("Subject ~ Days + (1 | Subject)", DataError, "must be numeric"),
        ("ifelse(Days > 4, 'a', 'b') ~ Days + (1 | Subject)", DataError, "must be numeric"),
        ("Reaction ~ Days - offset(Days) + (1 | Subject)", FormulaError, "offset term"),
        ("Reaction ~ cut(Days, 1) + (1 | Subject)", FormulaError, "invalid number of intervals"),
    ],
)
def test_bad_expressions_are_lmm_errors(formula, error, words, sleep):
    with pytest.raises(error, match=words):
        fit(formula, sleep)


def test_rows_where_an_expression_is_na_are_dropped_as_r(sleep):
    # cut() outside its breaks is NA, and R's model.frame drops the row
    m = fit("Reaction ~ cut(Days, breaks = c(0, 4, 9)) + (1 | Subject)", sleep)
    assert m.design.n_dropped == int((sleep["Days"] == 0).sum())
    assert m.design.n == int((sleep["Days"] > 0).sum())


TOKENS = [
    "y",
    "x",
    "g",
    "1",
    "~",
    "+",
    "-",
    "*",
    "/",
    ":",
    "^",
    "|",
    "(",
    ")",
    ",",
    "I(",
    "log(",
    "poly(",
    "%in%",
    "%%",
    ">",
    "<=",
    "==",
    "!=",
    "!",
    "&",
    "&&",
    "=",
    "raw",
    "TRUE",
    "'a'",
    '"b"',
    "# c",
    "\n",
    "日数",
    "total.fruits",
    "1L",
    "0x1F",
    "2.5e-3",
    "offset(",
    "cut(",
    "c(",
]


def parses_or_formula_error(text):
    try:
        parse_formula(text)
    except FormulaError as e:
        assert text in str(e) or repr(text) in str(e)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=16))
def test_random_r_token_sequences_parse_or_raise_formula_error(tokens):
    parses_or_formula_error(" ".join(tokens))
