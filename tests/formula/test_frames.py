"""polars DataFrames and pyarrow Tables as data=: converted once at the entry, the fit identical
to the pandas fit (the same rows, columns and levels give the same design, so the estimates
agree exactly, not just within a tolerance), results pandas.  Skipped where polars or pyarrow
is not installed (both are optional)."""

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.formula.frames import as_pandas, is_foreign_frame

FORMULA = "Reaction ~ Days + (Days | Subject)"


def _sleepstudy():
    d = lmmpy.datasets.load("sleepstudy")
    d["Subject"] = d["Subject"].astype(str)  # strings: the levels sorted, as R's factor() sorts them
    return d


def _same_fit(a, b):
    np.testing.assert_array_equal(a.theta, b.theta)
    pd.testing.assert_series_equal(a.fixef, b.fixef)
    assert a.objective == b.objective and a.sigma == b.sigma
    for ra, rb in zip(a.ranef.values(), b.ranef.values()):  # the group's name may differ
        pd.testing.assert_frame_equal(ra, rb, check_names=False)


def test_polars_frame_fits_as_the_pandas_frame():
    pl = pytest.importorskip("polars")
    d = _sleepstudy()
    pdf = pl.from_dict({c: d[c].to_list() for c in d.columns})
    assert is_foreign_frame(pdf)
    fit_pl, fit_pd = lmmpy.lmer(FORMULA, pdf), lmmpy.lmer(FORMULA, d)
    _same_fit(fit_pl, fit_pd)
    assert isinstance(fit_pl.fixef, pd.Series) and isinstance(fit_pl.predict(), pd.Series)
    assert isinstance(fit_pl.ranef["Subject"], pd.DataFrame)
    # newdata as polars too
    np.testing.assert_array_equal(fit_pl.predict(pdf.head(5)).to_numpy(), fit_pd.predict(d.head(5)).to_numpy())


def test_polars_categorical_enum_and_nulls():
    pl = pytest.importorskip("polars")
    d = _sleepstudy()
    d.loc[[3, 50], "Reaction"] = np.nan
    levels = sorted(d["Subject"].unique(), reverse=True)  # an Enum keeps its own order of levels
    pdf = pl.DataFrame({"Reaction": d["Reaction"].to_list(), "Days": d["Days"].to_list(), "Subject": d["Subject"]})
    pdf = pdf.with_columns(pl.col("Subject").cast(pl.Categorical).alias("SubjectC"))
    pdf = pdf.with_columns(pl.col("Subject").cast(pl.Enum(levels)).alias("SubjectE"))
    conv = as_pandas(pdf)
    assert conv["Reaction"].isna().sum() == 2
    assert list(conv["SubjectE"].cat.categories) == levels
    assert conv["SubjectC"].tolist() == d["Subject"].tolist()
    ref = lmmpy.lmer(FORMULA, d)
    assert ref.n_dropped == 2
    _same_fit(lmmpy.lmer(FORMULA.replace("Subject", "SubjectC"), pdf), ref)
    enum_fit = lmmpy.lmer(FORMULA.replace("Subject", "SubjectE"), pdf)
    assert list(enum_fit.ranef["SubjectE"].index) == levels  # the Enum's order, as a factor's levels
    assert enum_fit.objective == pytest.approx(ref.objective, rel=1e-12)


def test_pyarrow_table_fits_as_the_pandas_frame():
    pa = pytest.importorskip("pyarrow")
    d = _sleepstudy()
    table = pa.Table.from_pandas(d, preserve_index=False)
    _same_fit(lmmpy.lmer(FORMULA, table), lmmpy.lmer(FORMULA, d))
    # a dictionary column (pandas category through arrow) stays a factor with its levels
    cat = lmmpy.datasets.load("sleepstudy")
    _same_fit(lmmpy.lmer(FORMULA, pa.Table.from_pandas(cat, preserve_index=False)), lmmpy.lmer(FORMULA, cat))


def test_user_frame_untouched_and_errors():
    pl = pytest.importorskip("polars")
    d = _sleepstudy()
    pdf = pl.from_dict({c: d[c].to_list() for c in d.columns})
    before = pdf.clone()
    lmmpy.lmer(FORMULA, pdf)
    assert pdf.equals(before)
    with pytest.raises(lmmpy.DataError, match="LazyFrame: collect"):
        lmmpy.lmer(FORMULA, pdf.lazy())
    with pytest.raises(lmmpy.DataError, match="pandas DataFrame \\(or a polars DataFrame or pyarrow Table\\)"):
        lmmpy.lmer(FORMULA, [1, 2, 3])


def test_mixedml_takes_polars():
    pl = pytest.importorskip("polars")
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    d = _sleepstudy()
    pdf = pl.from_dict({c: d[c].to_list() for c in d.columns})
    a = lmmpy.MixedML.from_formula("Reaction ~ Days + (1 | Subject)", pdf, LinearRegression())
    b = lmmpy.MixedML.from_formula("Reaction ~ Days + (1 | Subject)", d, LinearRegression())
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-12)
    np.testing.assert_allclose(a.predict(pdf), b.predict(d), rtol=1e-12)
    c = lmmpy.MixedML(LinearRegression()).fit(pdf.select("Days"), d["Reaction"], groups=d["Subject"])
    e = lmmpy.MixedML(LinearRegression()).fit(d[["Days"]], d["Reaction"], groups=d["Subject"])
    np.testing.assert_allclose(c.theta_, e.theta_, rtol=1e-12)
