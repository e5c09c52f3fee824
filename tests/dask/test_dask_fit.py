"""lmer() on Dask data equals lmer() on the same rows in pandas, on a real cluster.

A distributed.LocalCluster of 2 worker processes (1 thread each) is started here; the data
are a parquet data set of several files written to a temporary folder and read back with
dask.dataframe.read_parquet, so every partition is materialised on a worker and only the
cross-products travel.  Tolerances (issue 14): criterion 1e-9 relative, fixed effects 1e-6,
variance components 1e-5.  One test fits a reference model of tests/reference (made by
lme4, lme4_reference.R) through Dask and compares with lme4's numbers.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

import dask  # noqa: E402

import lmmpy  # noqa: E402
from lmmpy.daskfit import DaskLmerFit  # noqa: E402
from lmmpy.errors import LmmError  # noqa: E402
from lmmpy.inference import partition_passes  # noqa: E402

REF = Path(__file__).resolve().parent.parent / "reference"
FORMULA = "y ~ x + f + (1 + x | g) + (1 | h)"


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cluster's own notices (ports, memory)
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GB", dashboard_address=None
        )
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def simulated(seed=7, n=2400):
    """Rows of y = 1 + 0.5 x + f + b_g + x c_g + d_h + e, weights and an offset column, and
    missing values."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 60, n)
    h = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    f = rng.choice(["lo", "mid", "hi"], n)
    bg, cg, dh = rng.normal(0, 0.8, 60), rng.normal(0, 0.3, 60), rng.normal(0, 0.5, 12)
    y = 1 + 0.5 * x + (f == "hi") * 0.4 + bg[g] + cg[g] * x + dh[h] + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "f": f, "g": [f"g{v:02d}" for v in g], "h": h})
    df["w"], df["o"] = rng.uniform(0.5, 2.0, n), rng.normal(0, 0.2, n)
    df.loc[rng.choice(n, 40, replace=False), "x"] = np.nan  # rows dropped and counted
    df.loc[rng.choice(n, 15, replace=False), "y"] = np.nan
    df.loc[rng.choice(n, 10, replace=False), "w"] = np.nan
    df.loc[rng.choice(n, 5, replace=False), "o"] = np.nan
    # a level of g that only the last file has, and one only in rows with a missing value
    df.loc[df.index[-30:], "g"] = "g_late"
    df.loc[df.index[5], ["g", "y"]] = ["g_only_na", np.nan]
    return df


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(pandas frame, Dask frame read from 5 parquet files)."""
    df = simulated()
    folder = tmp_path_factory.mktemp("parquet")
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), 5)):
        df.iloc[chunk].to_parquet(folder / f"part-{i}.parquet")
    ddf = dd.read_parquet(str(folder))
    assert ddf.npartitions >= 5
    return pd.read_parquet(folder), ddf


def assert_same_fit(a, b):
    """A pandas fit and a Dask fit agree to issue 14's tolerances."""
    assert isinstance(b, DaskLmerFit)
    assert abs(b.objective - a.objective) <= 1e-9 * abs(a.objective)
    np.testing.assert_allclose(b.fixef.to_numpy(), a.fixef.to_numpy(), rtol=0, atol=1e-6)
    assert list(b.fixef.index) == list(a.fixef.index)
    np.testing.assert_allclose(b.varcorr["vcov"].to_numpy(), a.varcorr["vcov"].to_numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(b.vcov.to_numpy(), a.vcov.to_numpy(), rtol=1e-5, atol=1e-10)
    assert (b.nobs, b.n_dropped, b.ngrps) == (a.nobs, a.n_dropped, a.ngrps)
    for grp in a.ranef:
        pd.testing.assert_frame_equal(b.ranef[grp], a.ranef[grp], rtol=1e-5, atol=1e-7)
        pd.testing.assert_frame_equal(b.ranef_sd[grp], a.ranef_sd[grp], rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def fits(client, data):
    df, ddf = data
    return {
        "reml": (lmmpy.lmer(FORMULA, df), lmmpy.lmer(FORMULA, ddf)),
        "ml_weights": (
            lmmpy.lmer(FORMULA, df, REML=False, weights="w", offset="o"),
            lmmpy.lmer(FORMULA, ddf, REML=False, weights="w", offset="o"),
        ),
    }


@pytest.mark.parametrize("kind", ["reml", "ml_weights"])
def test_dask_fit_equals_pandas_fit(fits, kind):
    a, b = fits[kind]
    assert_same_fit(a, b)
    assert "g_late" in b.ranef["g"].index and "g_only_na" not in b.ranef["g"].index


@pytest.mark.parametrize("kind, columns", [("reml", "yxfgh"), ("ml_weights", "yxfghwo")])
def test_dropped_rows_are_counted(fits, data, kind, columns):
    df, _ = data
    _, b = fits[kind]
    assert b.n_dropped == df[list(columns)].isna().any(axis=1).sum() > 0
    assert b.nobs + b.n_dropped == len(df)


def test_summary_prints_as_for_pandas(fits):
    for a, b in fits.values():
        assert str(b.summary()) == str(a.summary())  # exact residual quantiles (a second pass)
        assert str(b.summary(ddf="satterthwaite")) == str(a.summary(ddf="satterthwaite"))


def test_confint_wald_and_satterthwaite(fits):
    a, b = fits["reml"]
    pd.testing.assert_frame_equal(b.confint("wald"), a.confint("wald"), rtol=1e-6)
    pd.testing.assert_frame_equal(b.satterthwaite(), a.satterthwaite(), rtol=1e-4)


def test_fitted_residuals_predict_are_dask_series(fits, data):
    df, ddf = data
    for a, b in fits.values():
        fitted = b.fitted
        assert isinstance(fitted, dd.Series)
        pd.testing.assert_series_equal(fitted.compute(), a.fitted, rtol=1e-6, check_index_type=False)
        r = b.residuals("pearson", scaled=True)
        assert isinstance(r, dd.Series)
        pd.testing.assert_series_equal(r.compute(), a.residuals("pearson", scaled=True), rtol=1e-5, atol=1e-6)
    a, b = fits["reml"]
    pred = b.predict(ddf, re_form="~0")
    assert isinstance(pred, dd.Series)
    expected = a.predict(df, re_form="~0")
    pd.testing.assert_series_equal(pred.compute(), expected, rtol=1e-6, check_index_type=False)
    # a pandas frame gives a pandas Series
    rows = df.iloc[10:60]  # (row 5 has a level that the fits dropped: an error for both)
    pd.testing.assert_series_equal(b.predict(rows), a.predict(rows), rtol=1e-6)


def test_anova_between_two_dask_fits(client, data, fits):
    df, ddf = data
    a1, b1 = fits["reml"]
    a0 = lmmpy.lmer("y ~ x + f + (1 | g) + (1 | h)", df)
    b0 = lmmpy.lmer("y ~ x + f + (1 | g) + (1 | h)", ddf)
    ta, tb = lmmpy.anova(a0, a1).to_frame(), lmmpy.anova(b0, b1).to_frame()
    cols = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    pd.testing.assert_frame_equal(tb[cols], ta[cols], rtol=1e-7)
    with pytest.raises(LmmError, match="Dask data"):
        lmmpy.anova(a0, b1)


def test_what_needs_the_rows_many_times_says_why(fits):
    _, b = fits["reml"]
    for call in (
        lambda: b.profile(),
        lambda: b.confint("profile"),
        lambda: b.confint("boot", nsim=10),
        lambda: b.kenward_roger(),
        lambda: b.summary(ddf="kenward-roger"),
        lambda: b.simulate(2),
        lambda: b.refit(np.zeros(b.nobs)),
        lambda: b.anova(),
    ):
        with pytest.raises(LmmError, match="Dask data"):
            call()


def test_approximate_quantiles_say_so(fits, monkeypatch):
    a, b = fits["reml"]
    monkeypatch.setattr(partition_passes, "EXACT_QUANTILE_ROWS", 0)
    b._quantiles = None
    q, method = b.residual_quantiles()
    b._quantiles = None
    exact, _ = a.residual_quantiles()
    assert "approximate" in method and method in str(b.summary())
    np.testing.assert_allclose(q[[0, 4]], exact[[0, 4]], rtol=1e-6)  # Min, Max exact
    # Dask's quartiles merge per-partition percentiles: near, not equal (here ~470 rows a partition)
    np.testing.assert_allclose(q[1:4], exact[1:4], atol=0.2)
    assert np.all(np.diff(q) > 0)


def test_threads_scheduler_without_a_client(data, fits):
    """The default scheduler (no distributed Client) fits the same model."""
    _, ddf = data
    a, _ = fits["reml"]
    with dask.config.set(scheduler="threads"):
        b = lmmpy.lmer(FORMULA, ddf)
    assert_same_fit(a, b)


def test_declared_categories_with_an_unused_level(client):
    """Categories known to Dask are used without a pass; a category no row has is dropped,
    as lme4 drops unused levels."""
    df = simulated(seed=3, n=800)
    df["g"] = pd.Categorical(df["g"], categories=sorted(set(df["g"])) + ["never"])
    ddf = dd.from_pandas(df, npartitions=4)
    assert ddf["g"].cat.known
    a = lmmpy.lmer("y ~ x + (1 | g)", df)
    b = lmmpy.lmer("y ~ x + (1 | g)", ddf)
    assert_same_fit(a, b)
    assert "never" not in b.ranef["g"].index


def test_interaction_grouping_factor(client):
    df = simulated(seed=5, n=900)
    ddf = dd.from_pandas(df, npartitions=3)
    a = lmmpy.lmer("y ~ x + (1 | h) + (1 | h:f)", df)
    b = lmmpy.lmer("y ~ x + (1 | h) + (1 | h:f)", ddf)
    assert_same_fit(a, b)


def test_lme4_reference_through_dask(client):
    """sleepstudy's (Days | Subject) REML fit on Dask data against lme4's numbers."""
    ref = json.loads((REF / "sleepstudy_slopes_reml.json").read_text())
    df = lmmpy.datasets.load("sleepstudy")
    df["Subject"] = df["Subject"].astype(str)
    fit = lmmpy.lmer(ref["formula"], dd.from_pandas(df, npartitions=3))
    assert abs(fit.objective - ref["criterion"]) < 1e-6
    np.testing.assert_allclose(fit.fixef.to_numpy(), list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=1e-6)
    np.testing.assert_allclose(fit.residual_quantiles()[0], ref["scaled_resid_quantiles"], rtol=1e-5, atol=1e-6)


def test_bad_dask_input_is_an_lmm_error(data):
    _, ddf = data
    with pytest.raises(LmmError, match="name a column"):
        lmmpy.lmer(FORMULA, ddf, weights=np.ones(10))
    with pytest.raises(LmmError, match="unknown column"):
        lmmpy.lmer("y ~ nope + (1 | g)", ddf)
    with pytest.raises(LmmError, match="whole column"):
        lmmpy.lmer("y ~ poly(x, 2) + (1 | g)", ddf)
