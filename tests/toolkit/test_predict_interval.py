"""fit.predict(se_fit=True, interval=...) against an independent dense computation:
V(beta-hat) = (X' Vy^{-1} X)^{-1} with Vy = Z G Z' + sigma^2 I built densely, and the
conditional covariance of b given the data and beta as (Z'Z / sigma^2 + G^{-1})^{-1} (not
through lmmpy's factor).  Tolerance 1e-7 relative: both are exact linear algebra at the same
estimates.  And against R: the same quantities from lme4's vcov, condVar and VarCorr
(tests/reference/toolkit/prediction_intervals_sleepstudy.json, vignette_after_the_fit.R; lme4
1.1-31's predict has no se.fit), 1e-5 relative: lmmpy's and lme4's sleepstudy estimates agree
to ~1e-6 relative, and the SEs and conditional variances follow from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
from scipy import stats

import lmmpy
from lmmpy.errors import LmmError

R_INTERVALS = Path(__file__).resolve().parent.parent / "reference" / "toolkit" / "prediction_intervals_sleepstudy.json"


@pytest.fixture(scope="module")
def fit():
    return lmmpy.lmer("Reaction ~ Days + (Days | Subject)", lmmpy.datasets.load("sleepstudy"))


def _dense(fit):
    X, Z = fit.design.X, fit.design.Z().toarray()
    t = fit.design.reterms[0]
    G = sla.block_diag(*[fit.covariances[0]] * t.nlevels)
    Vy = Z @ G @ Z.T + fit.sigma**2 * np.eye(fit.nobs)
    Vbeta = np.linalg.inv(X.T @ np.linalg.solve(Vy, X))
    C = np.linalg.inv(Z.T @ Z / fit.sigma**2 + np.linalg.inv(G))
    return Vbeta, C, t


NEW = pd.DataFrame({"Days": [0.0, 4.5, 9.0, np.nan], "Subject": ["308", "335", "999", "308"]})


def test_se_fit_and_intervals_match_a_dense_computation(fit):
    Vbeta, C, t = _dense(fit)
    q = stats.norm.ppf(0.975)
    out = fit.predict(NEW, allow_new_levels=True, se_fit=True, interval="prediction")
    assert list(out.columns) == ["fit", "se.fit", "lwr", "upr"]
    assert np.allclose(out["fit"].iloc[:3], fit.predict(NEW.iloc[:3], allow_new_levels=True), rtol=1e-12)
    assert out.iloc[3].isna().all()  # a missing covariate predicts NaN, as lme4's na.pass
    for r in range(3):
        x = np.array([1.0, NEW["Days"].iloc[r]])
        var_fixed = x @ Vbeta @ x
        assert out["se.fit"].iloc[r] == pytest.approx(np.sqrt(var_fixed), rel=1e-7)
        subject = NEW["Subject"].iloc[r]
        if subject in t.levels:
            j = t.levels.index(subject)
            Cj = C[2 * j : 2 * j + 2, 2 * j : 2 * j + 2]
        else:  # a new level: its random effects drawn from their distribution
            Cj = fit.covariances[0]
        s = np.sqrt(var_fixed + x @ Cj @ x + fit.sigma**2)
        assert out["upr"].iloc[r] - out["fit"].iloc[r] == pytest.approx(q * s, rel=1e-7)
        assert out["fit"].iloc[r] - out["lwr"].iloc[r] == pytest.approx(q * s, rel=1e-7)


def test_confidence_interval_and_population_prediction(fit):
    Vbeta, _, _ = _dense(fit)
    new = NEW.iloc[:3]
    conf = fit.predict(new, re_form="~0", interval="confidence", level=0.9)
    assert list(conf.columns) == ["fit", "lwr", "upr"]
    x = np.column_stack([np.ones(3), new["Days"]])
    se = np.sqrt(np.einsum("ij,jk,ik->i", x, Vbeta, x))
    assert np.allclose(conf["upr"] - conf["fit"], stats.norm.ppf(0.95) * se, rtol=1e-7)
    assert np.allclose(conf["fit"], x @ fit.fixef.to_numpy())
    pop = fit.predict(new, re_form="~0", interval="prediction")  # a new subject: Sigma for every term
    s = np.sqrt(se**2 + np.einsum("ij,jk,ik->i", x, fit.covariances[0], x) + fit.sigma**2)
    assert np.allclose(pop["upr"] - pop["fit"], stats.norm.ppf(0.975) * s, rtol=1e-7)


def test_defaults_and_errors(fit):
    assert isinstance(fit.predict(), pd.Series)
    table = fit.predict(se_fit=True)
    assert np.allclose(table["fit"], fit.fitted) and len(table) == fit.nobs
    with pytest.raises(LmmError, match="interval"):
        fit.predict(NEW, interval="tolerance")
    with pytest.raises(LmmError, match="se_fit"):
        fit.predict(NEW, se_fit="yes")
    with pytest.raises(LmmError, match="level"):
        fit.predict(NEW, interval="confidence", level=1.5)


def test_intervals_match_rs_computation_from_lme4s_fit(fit):
    ref = json.loads(R_INTERVALS.read_text())["table"]
    new = pd.DataFrame({"Subject": ref["Subject"], "Days": ref["Days"]})  # subject 308 and a new one
    conf = fit.predict(new, allow_new_levels=True, se_fit=True, interval="confidence")
    pred = fit.predict(new, allow_new_levels=True, interval="prediction")
    for got, want in (
        (conf["fit"], "fit"),
        (conf["se.fit"], "se.fit"),
        (conf["lwr"], "conf.lwr"),
        (conf["upr"], "conf.upr"),
        (pred["lwr"], "pred.lwr"),
        (pred["upr"], "pred.upr"),
    ):
        np.testing.assert_allclose(got, ref[want], rtol=1e-5, err_msg=want)
