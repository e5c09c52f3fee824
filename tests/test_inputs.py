"""Bad input gets a clear lmmpy error naming the problem; the caller's data are never modified."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy import DataError, FormulaError, LmmError


@pytest.fixture
def sleep():
    return lmmpy.datasets.load("sleepstudy")


def test_data_not_modified(sleep):
    d = sleep.assign(Subject=sleep["Subject"].astype(int))  # numeric, made a factor by the fit
    d.loc[3, "Reaction"] = np.nan  # a row to drop
    before = d.copy(deep=True)
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, factors=["Subject"])
    assert fit.nobs == 179
    pd.testing.assert_frame_equal(d, before)
    # the formula uses every column (the design then shares them, pandas >= 3 copying on write)
    # and the fit adds weights, an offset and a factor to its own frame
    w, off = np.linspace(0.5, 2, len(d)), np.linspace(-1, 1, len(d))
    lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d, factors=["Subject"], weights=w, offset=off)
    pd.testing.assert_frame_equal(d, before)


def test_missing_rows_dropped_and_reported(sleep):
    d = sleep.copy()
    d.loc[[0, 5, 7], "Reaction"] = np.nan
    d["unused"] = np.nan  # a column the model does not use does not count
    fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d)
    assert fit.nobs == 177 and fit.n_dropped == 3
    assert "  (3 observations deleted due to missingness)" in str(fit.summary())
    full = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", sleep.drop(index=[0, 5, 7]))
    assert fit.objective == pytest.approx(full.objective)


def test_unknown_column(sleep):
    with pytest.raises(DataError, match="unknown column 'Dayz'"):
        lmmpy.lmer("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(DataError, match="unknown column 'Subj'"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subj)", sleep)


def test_non_numeric_response(sleep):
    with pytest.raises(DataError, match="response 'Subject' must be numeric"):
        lmmpy.lmer("Subject ~ Days + (1 | Subject)", sleep)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_response(sleep, bad):
    d = sleep.copy()
    d.loc[4, "Reaction"] = bad
    with pytest.raises(DataError, match="infinite"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d)


def test_constant_response(sleep):
    d = sleep.assign(Reaction=1.0)
    with pytest.raises(DataError, match="constant"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d)


def test_grouping_factor_with_one_level(sleep):
    d = sleep.assign(one="a")
    with pytest.raises(DataError, match="grouping factor 'one' has only 1 level"):
        lmmpy.lmer("Reaction ~ Days + (1 | one)", d)


def test_as_many_levels_as_observations(sleep):
    d = sleep.assign(row=np.arange(len(sleep)))
    with pytest.raises(DataError, match="number of levels of each grouping factor must be < number of observations"):
        lmmpy.lmer("Reaction ~ Days + (1 | row)", d)


def test_more_random_effects_than_observations(sleep):
    d = sleep.assign(pair=np.arange(len(sleep)) // 2)
    with pytest.raises(DataError, match=r"number of observations \(=180\) <= number of random effects \(=180\)"):
        lmmpy.lmer("Reaction ~ Days + (Days | pair)", d)


def test_all_rows_missing(sleep):
    d = sleep.assign(Reaction=np.nan)
    with pytest.raises(DataError, match="no observations left"):
        lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d)


def test_not_a_dataframe():
    with pytest.raises(DataError, match="must be a pandas DataFrame"):
        lmmpy.lmer("y ~ 1 + (1 | g)", [1, 2, 3])


def test_errors_share_one_family(sleep):
    assert issubclass(FormulaError, LmmError) and issubclass(DataError, LmmError)
    assert issubclass(LmmError, ValueError)
    with pytest.raises(LmmError):
        lmmpy.lmer("Reaction ~ Days + (Days | Subject", sleep)


def test_singular_fit_warns():
    d = lmmpy.datasets.load("Dyestuff2")
    with pytest.warns(lmmpy.SingularFitWarning, match="boundary \\(singular\\) fit"):
        fit = lmmpy.lmer("Yield ~ 1 + (1 | Batch)", d)
    assert fit.is_singular


def test_regular_fit_does_not_warn(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = lmmpy.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert not fit.is_singular and fit.optsum.converged


def test_infinite_predictor(sleep):
    d = sleep.assign(x=np.where(sleep["Days"] == 2, np.inf, sleep["Days"]))
    with pytest.raises(DataError, match="infinite values in 'x' of the fixed-effects matrix"):
        lmmpy.lmer("Reaction ~ x + (1 | Subject)", d)
    with pytest.raises(DataError, match="infinite values in 'x' of the random-effects term"):
        lmmpy.lmer("Reaction ~ Days + (x | Subject)", d)


def test_no_fixed_effects(sleep):
    fit = lmmpy.lmer("Reaction ~ 0 + (1 | Subject)", sleep)
    assert fit.fixef.empty and np.isfinite(fit.objective)
    assert "Fixed effects" not in str(fit.summary())
