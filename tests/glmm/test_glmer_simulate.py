"""GlmerFit.simulate and GlmerFit.refit (lme4's simulate.merMod and refit for glmer fits).

R cannot give the same random draws, so the simulations are checked against the model they
come from: each row's mean over many draws against its expected value under the fitted model,
E y_i = E_b g^{-1}(x_i'beta + z_i'b), b ~ N(0, Sigma) (Gauss-Hermite quadrature for a logit
random intercept, the log-normal mean exp(eta + sum sigma_t^2 / 2) for log links), held to
4.5 standard errors of the mean, sd from the same model's variance (the law of large numbers:
with fixed seeds the tests are deterministic, and at 4.5 sd a correct simulation fails with
probability ~7e-6 per row).  The refits of the fit's own response must reproduce it to 1e-8
(the same optimizer from the same start on the same numbers)."""

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.errors import LmmError

from glmm_refs import load_data

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
NSIM = 2000
Z_TOL = 4.5


@pytest.fixture(scope="module")
def cbpp():
    return lmmpy.datasets.load("cbpp")


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return lmmpy.glmer(CBPP, cbpp, family="binomial")


def _gh_moments(eta, sd, linkinv, var_given_b):
    """E mu and E var + var mu over b ~ N(0, sd^2) by 40-point Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    mu = linkinv(eta[:, None] + sd * z[None, :])
    mean = mu @ w
    var = var_given_b(mu) @ w + (mu**2) @ w - mean**2
    return mean, var


def test_cbind_simulation_layout_and_trials(cbpp, cbpp_fit):
    sims = cbpp_fit.simulate(3, seed=1)
    assert list(sims.columns) == [(f"sim_{s}", c) for s in (1, 2, 3) for c in ("incidence", "size - incidence")]
    for s in (1, 2, 3):
        pair = sims[f"sim_{s}"].to_numpy()
        assert np.all(pair >= 0) and np.all(pair == np.round(pair))
        np.testing.assert_array_equal(pair.sum(axis=1), cbpp["size"].to_numpy())  # the trials are kept


def test_binomial_simulation_mean_matches_the_model(cbpp, cbpp_fit):
    sims = cbpp_fit.simulate(NSIM, seed=20261201)
    success = sims.xs("incidence", axis=1, level=1).to_numpy() / cbpp["size"].to_numpy()[:, None]
    eta = cbpp_fit.model.X @ cbpp_fit.beta
    size = cbpp["size"].to_numpy()
    fam = cbpp_fit.family
    mean, var = _gh_moments(eta, cbpp_fit.theta[0], fam.linkinv, lambda mu: mu * (1 - mu) / size[:, None])
    z = (success.mean(axis=1) - mean) / np.sqrt(var / NSIM)
    assert np.max(np.abs(z)) < Z_TOL
    # the spread too: the variance of the draws against the model's (4.5 sd of a variance,
    # sd(s^2) ~ s^2 sqrt(2 / NSIM) up to the excess kurtosis, taken as at most 3 here)
    rel = success.var(axis=1, ddof=1) / var - 1
    assert np.max(np.abs(rel)) < Z_TOL * np.sqrt((2 + 3) / NSIM)


def test_simulation_draws_new_random_effects(cbpp_fit):
    """Rows of a herd share the herd's draw: their simulated proportions correlate across
    simulations (the conditional modes alone would give independent rows)."""
    sims = cbpp_fit.simulate(NSIM, seed=7).xs("incidence", axis=1, level=1).to_numpy()
    herd = cbpp_fit.design.reterms[0].codes
    same = [(i, j) for i in range(len(herd)) for j in range(i) if herd[i] == herd[j]]
    cors = [np.corrcoef(sims[i], sims[j])[0, 1] for i, j in same]
    assert np.mean(cors) > 0.1  # a correlation of ~0 has sd 1 / sqrt(NSIM * len(same)) ~ 2e-3


def test_poisson_simulation_mean_matches_the_model():
    gt = lmmpy.datasets.load("grouseticks")
    fit = lmmpy.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", gt, family="poisson")
    sims = fit.simulate(NSIM, seed=3).to_numpy()
    assert np.all(sims == np.round(sims)) and np.all(sims >= 0)
    s2 = float(np.sum(fit.theta**2))  # the random effects' total variance on the log scale
    m = np.exp(fit.model.X @ fit.beta + s2 / 2)  # log-normal mean
    var = m + m**2 * np.expm1(s2)
    z = (sims.mean(axis=1) - m) / np.sqrt(var / NSIM)
    assert np.max(np.abs(z)) < Z_TOL


@pytest.mark.filterwarnings("ignore:Model failed to converge")  # this fit's gradient check (not what is tested)
def test_gamma_simulation_mean_and_variance():
    """Gamma draws with shape 1 / sigma^2 (lme4 since its issue 782): the mean and the variance
    of the model, E y = E mu and var y = sigma^2 E mu^2 + var mu (lme4 1.1-31's shape sigma
    gives a variance off by the factor 1 / sigma^3 in the first term, which this catches)."""
    data = load_data("gamma_positive")
    fit = lmmpy.glmer("y ~ x + (1 | g)", data, family=lmmpy.families.Gamma(link="log"))
    sims = fit.simulate(NSIM, seed=11).to_numpy()
    assert np.all(sims > 0)
    s2 = fit.theta[0] ** 2  # lme4 does not scale a glmer simulation's random effects by sigma
    eta = fit.model.X @ fit.beta
    m = np.exp(eta + s2 / 2)  # log-normal moments of mu
    Emu2 = np.exp(2 * eta + 2 * s2)
    var = fit.sigma**2 * Emu2 + Emu2 - m**2
    z = (sims.mean(axis=1) - m) / np.sqrt(var / NSIM)
    assert np.max(np.abs(z)) < Z_TOL
    # the variance pooled over rows: its relative error is ~ sqrt(kurtosis / (NSIM rows)) < 1%
    ratio = np.mean(sims.var(axis=1, ddof=1) / var)
    assert abs(ratio - 1) < 0.05


def test_binary_and_factor_responses(cbpp, cbpp_fit):
    """cbpp as one row per animal, the response 0/1 and as a string column: the simulations
    are 0/1 numbers and the response's levels, and both refit to the fit."""
    rows = cbpp.loc[cbpp.index.repeat(cbpp["size"])].copy()
    rows["sick"] = np.concatenate([np.arange(n) < k for k, n in zip(cbpp["incidence"], cbpp["size"])]).astype(float)
    rows["status"] = np.where(rows["sick"] == 1, "sick", "healthy")
    binary = lmmpy.glmer("sick ~ period + (1 | herd)", rows)
    np.testing.assert_allclose(binary.fixef, cbpp_fit.fixef, rtol=1e-5)  # the same likelihood up to a constant
    sim = binary.simulate(2, seed=5)
    assert set(np.unique(sim.to_numpy())) <= {0.0, 1.0}
    factor = lmmpy.glmer("status ~ period + (1 | herd)", rows)
    fsim = factor.simulate(2, seed=5)
    assert isinstance(fsim["sim_1"].dtype, pd.CategoricalDtype)
    assert list(fsim["sim_1"].cat.categories) == ["healthy", "sick"]
    np.testing.assert_array_equal((fsim["sim_1"] == "sick").to_numpy(dtype=float), sim["sim_1"].to_numpy())
    again = factor.refit(rows["status"])
    assert abs(again.objective - factor.objective) < 1e-8
    assert factor.refit(fsim["sim_1"]).objective != factor.objective
    with pytest.raises(LmmError, match="not levels"):
        factor.refit(rows["status"].replace("sick", "ill"))
    with pytest.raises(LmmError, match="non-numeric"):
        binary.refit(rows["status"])


def test_refit_reproduces_the_fit(cbpp, cbpp_fit):
    pair = cbpp[["incidence"]].assign(failures=cbpp["size"] - cbpp["incidence"])
    for new in (pair, pair.to_numpy(), cbpp["incidence"] / cbpp["size"]):
        again = cbpp_fit.refit(new)
        assert abs(again.objective - cbpp_fit.objective) < 1e-8
        np.testing.assert_allclose(again.theta, cbpp_fit.theta, rtol=0, atol=1e-8)
        np.testing.assert_allclose(again.fixef, cbpp_fit.fixef, rtol=0, atol=1e-8)
        assert type(again) is type(cbpp_fit)


def test_refit_of_a_simulation(cbpp_fit):
    sims = cbpp_fit.simulate(2, seed=2)
    refits = [cbpp_fit.refit(sims[f"sim_{s}"]) for s in (1, 2)]
    for r in refits:
        assert np.isfinite(r.objective) and r.objective != cbpp_fit.objective
        assert r.family.family == "binomial" and r.nobs == cbpp_fit.nobs
    assert refits[0].objective != refits[1].objective


def test_bad_inputs(cbpp, cbpp_fit):
    n = cbpp_fit.nobs
    with pytest.raises(LmmError, match="rows"):
        cbpp_fit.refit(np.zeros((n - 1, 2)))
    with pytest.raises(LmmError, match="two-column"):
        cbpp_fit.refit(np.zeros((n, 3)))
    with pytest.raises(LmmError, match="proportion"):
        cbpp_fit.refit(cbpp["incidence"])  # counts as one column: ambiguous, refused
    with pytest.raises(LmmError, match="NaN"):
        cbpp_fit.refit(np.full(n, np.nan))
    with pytest.raises(LmmError, match="must be an array"):
        cbpp_fit.refit("incidence")
    with pytest.raises(LmmError, match="must be an array"):
        cbpp_fit.refit({"a": 1})
    with pytest.raises(LmmError, match="numeric"):
        cbpp_fit.refit(np.array(["a"] * n))
    with pytest.raises(LmmError, match="nsim"):
        cbpp_fit.simulate(0)
    with pytest.raises(LmmError, match="seed"):
        cbpp_fit.simulate(1, seed="x")
    gt = lmmpy.datasets.load("grouseticks")
    fit = lmmpy.glmer("TICKS ~ YEAR + (1 | LOCATION)", gt, family="poisson")
    with pytest.raises(LmmError, match="two-column"):
        fit.refit(np.zeros((fit.nobs, 2)))
    with pytest.raises(LmmError, match="Poisson"):
        fit.refit(-np.ones(fit.nobs))


def test_bootstrap_intervals(cbpp_fit):
    """confint("boot"): simulate + refit nsim times, percentile intervals.  No R numbers (other
    draws): the fixed effects' bootstrap spread is held to their Wald standard errors (the
    bootstrap sd of 40 draws has a relative error of ~1 / sqrt(2 * 40) = 11%; 45% is 4 of
    those), and a seed gives the same intervals again."""
    from lmmpy.inference.glmm_simulate import bootstrap_glmm

    draws = bootstrap_glmm(cbpp_fit, nsim=40, seed=4, progress=False)
    assert list(draws.columns) == ["sd_(Intercept)|herd", "(Intercept)", "period2", "period3", "period4"]
    assert not draws.isna().any().any()
    ratio = draws.iloc[:, 1:].std(ddof=1).to_numpy() / cbpp_fit.se.to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.45)
    ci = cbpp_fit.confint("boot", nsim=40, seed=4, progress=False)
    assert list(ci.index) == [".sig01", "(Intercept)", "period2", "period3", "period4"]
    np.testing.assert_allclose(ci.iloc[:, 0], draws.quantile(0.025).to_numpy())
    assert ci.attrs["failed_refits"] == 0
    with pytest.raises(LmmError, match="nsim, seed, n_jobs"):
        cbpp_fit.confint("boot", nsims=10)
    with pytest.raises(LmmError, match="for method='boot'"):
        cbpp_fit.confint("wald", nsim=10)
