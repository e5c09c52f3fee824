"""glmer on a shifted and on a rescaled covariate (lmmpy.fit.scaling's centring and rescaling).

The yardstick is lmmpy's own fit of the same model on the covariate x (binomial_slope_cbind,
which matches lme4: tests/glmm/test_glmer_reference.py), mapped by hand:

- x_shift = x + 100: b_0 + b_1 x = (b_0 - 100 b_1) + b_1 x_shift, so the intercept is
  b_0 - 100 b_1, the intercepts' variance var_0 - 200 cov + 1e4 var_1, the covariance
  cov - 100 var_1 (the slope's unchanged); the intercept's variance of the estimates
  V_00 - 200 V_01 + 1e4 V_11.  -2 log L within 1e-6 relative, the rest 1e-4 relative: the two
  fits are made on differently centred internal columns (x's mean 1e-3, x_shift's 100.001) and
  each stops at its Newton steps' tolerance; the mapped variances add terms 1e4 times larger
  than the result, which loses ~4 of the 1e-8 digits the fits agree to.
- x_k = 1000 x: the slope's coefficient and its random effect divided by 1000, the rest the
  same, to 1e-6 relative (the internal column x_k / 2^11 differs from x by the factor
  1000 / 2048, so the two optimizer paths differ; their optima agree to ~1e-7).
"""

import warnings

import numpy as np
import pytest

import lmmpy
from lmmpy.errors import LmmError
from lmmpy.fit.scaling import CENTRE_RATIO, ColumnScaling, centring_shifts, lower_factor
from lmmpy.fit.status import Check, FitStatus, Note

from glmm_refs import SPEC, load_data, model_inputs

FORMULA = "cbind(succ, n - succ) ~ {x} + ({x} | g)"


def fit_of(column, nAGQ=1, data=None):
    d = load_data("binomial_slope") if data is None else data
    d["g"] = d["g"].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trustworthy fit: no warning at all
        return lmmpy.glmer(FORMULA.format(x=column), d, family="binomial", nAGQ=nAGQ)


@pytest.fixture(scope="module")
def fits():
    return {c: fit_of(c) for c in ("x", "x_shift", "x_k")}


def varcorr(fit) -> dict:
    return {(r.var1, r.var2 if isinstance(r.var2, str) else None): r.vcov for r in fit.varcorr.itertuples()}


def test_the_data_are_what_the_maps_assume():
    d = load_data("binomial_slope")
    np.testing.assert_allclose(d["x_shift"], d["x"] + 100, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d["x_k"], d["x"] * 1000, rtol=1e-12, atol=1e-9)


def test_shifted_fit_is_the_centred_one_mapped(fits):
    a, b = fits["x"], fits["x_shift"]
    assert -2 * b.loglik == pytest.approx(-2 * a.loglik, rel=1e-6)
    b0, b1 = a.fixef["(Intercept)"], a.fixef["x"]
    assert b.fixef["(Intercept)"] == pytest.approx(b0 - 100 * b1, rel=1e-4)
    assert b.fixef["x_shift"] == pytest.approx(b1, rel=1e-4)
    va, vb = varcorr(a), varcorr(b)
    v0, v1, c01 = va[("(Intercept)", None)], va[("x", None)], va[("(Intercept)", "x")]
    assert vb[("(Intercept)", None)] == pytest.approx(v0 - 200 * c01 + 1e4 * v1, rel=1e-4)
    assert vb[("(Intercept)", "x_shift")] == pytest.approx(c01 - 100 * v1, rel=1e-4)
    assert vb[("x_shift", None)] == pytest.approx(v1, rel=1e-4)
    V = a.vcov.to_numpy()
    assert b.se["(Intercept)"] == pytest.approx(np.sqrt(V[0, 0] - 200 * V[0, 1] + 1e4 * V[1, 1]), rel=1e-4)
    assert b.se["x_shift"] == pytest.approx(a.se["x"], rel=1e-4)
    # the same conditional modes: the slopes' as they are, the intercepts' shifted by 100 slopes
    ra, rb = a.ranef["g"], b.ranef["g"]
    np.testing.assert_allclose(rb["x_shift"], ra["x"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(rb["(Intercept)"], ra["(Intercept)"] - 100 * ra["x"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.fitted, a.fitted, rtol=1e-6)


def test_scaled_fit_is_the_unscaled_one_scaled(fits):
    a, b = fits["x"], fits["x_k"]
    assert -2 * b.loglik == pytest.approx(-2 * a.loglik, rel=1e-6)
    assert b.fixef["(Intercept)"] == pytest.approx(a.fixef["(Intercept)"], rel=1e-6)
    assert 1000 * b.fixef["x_k"] == pytest.approx(a.fixef["x"], rel=1e-6)
    # theta: the slope's row of the template in units of x_k
    np.testing.assert_allclose(b.theta * np.array([1, 1000, 1000]), a.theta, rtol=1e-6)
    assert b.se["(Intercept)"] == pytest.approx(a.se["(Intercept)"], rel=1e-6)
    assert 1000 * b.se["x_k"] == pytest.approx(a.se["x"], rel=1e-6)


def test_the_fits_are_trusted_and_say_how_they_were_made(fits):
    for column, kind in (("x_shift", Note.CENTRED), ("x_k", Note.RESCALED)):
        opt = fits[column].optsum
        assert opt.status is FitStatus.CONVERGED and opt.messages == []
        assert not fits[column].is_singular
        assert [n.kind for n in opt.fit_notes] == [kind]
    assert "x_shift - 100.001 in (x_shift | g)" in fits["x_shift"].optsum.notes[0]
    assert "x_k / 2^11" in fits["x_k"].optsum.notes[0]
    assert fits["x"].optsum.fit_notes == []  # nothing done to a well-posed model


def test_nagq0_and_start_on_the_shifted_covariate(fits):
    a0 = fit_of("x", nAGQ=0)
    b0 = fit_of("x_shift", nAGQ=0)
    assert -2 * b0.loglik == pytest.approx(-2 * a0.loglik, rel=1e-6)
    assert b0.fixef["x_shift"] == pytest.approx(a0.fixef["x"], rel=1e-4)
    # a start in the user's theta is mapped in: from the optimum, the same optimum
    d = load_data("binomial_slope")
    d["g"] = d["g"].astype(str)
    again = lmmpy.glmer(FORMULA.format(x="x_shift"), d, family="binomial", start=fits["x_shift"].theta)
    assert -2 * again.loglik == pytest.approx(-2 * fits["x_shift"].loglik, rel=1e-9)
    # the start mapped to the internal columns and back: the same to rounding (a product by
    # the scales and its inverse; equality to the bit holds only for some thetas)
    np.testing.assert_allclose(again.optsum.theta0, fits["x_shift"].theta, rtol=1e-14, atol=0)


def test_far_shift_and_scale_together():
    """x * 1e4 + 1e6: centred first, then scaled (by the centred column's size, not 1e6's)."""
    d = load_data("binomial_slope")
    d["x_far"] = d["x"] * 1e4 + 1e6
    a = fit_of("x")
    b = fit_of("x_far", data=d)
    assert -2 * b.loglik == pytest.approx(-2 * a.loglik, rel=1e-6)
    assert 1e4 * b.fixef["x_far"] == pytest.approx(a.fixef["x"], rel=1e-4)
    assert "rescaled" in b.optsum.notes[0] and "centred" in b.optsum.notes[0]


def test_columns_that_lose_digits_are_flagged():
    """x + 1e6: the centred fit is right (its slope is x's to 1e-6), but the data's own columns
    evaluate the deviance there ~1e-3 off (eta = b_0 + b_1 x cancels 6 digits): a warning."""
    d = load_data("binomial_slope")
    d["g"] = d["g"].astype(str)
    d["x_far"] = d["x"] + 1e6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmmpy.glmer(FORMULA.format(x="x_far"), d, family="binomial")
    assert fit.fixef["x_far"] == pytest.approx(fit_of("x").fixef["x"], rel=1e-6)
    assert Check.COLUMNS_LOSE_DIGITS in [f.kind for f in fit.optsum.findings]
    assert any("lose digits to rounding" in str(w.message) for w in caught)


def test_refit_of_a_centred_fit_is_centred_too(fits):
    b = fits["x_shift"]
    again = b.refit(b.simulate(1, seed=3)["sim_1"])
    assert [n.kind for n in again.optsum.fit_notes] == [Note.CENTRED]
    assert np.isfinite(again.loglik) and again.optsum.converged


def test_lower_factor_retriangularises():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(3, 3))
    L = lower_factor(M)
    assert np.allclose(np.triu(L, 1), 0) and np.all(np.diag(L) >= 0)
    np.testing.assert_allclose(L @ L.T, M @ M.T, rtol=1e-12, atol=1e-12)
    S = np.outer([1.0, 2.0], [1.0, 2.0])  # singular M M'
    L = lower_factor(np.array([[1.0, 0.0], [2.0, 0.0]]))
    np.testing.assert_allclose(L @ L.T, S, atol=1e-12)


def test_maps_are_inverse_and_the_jacobian_is_theirs():
    s, d, family, _, _ = model_inputs("binomial_slope_shifted_maxfun")
    design = lmmpy.glformula(s["formula"], d)
    sc = ColumnScaling.of(design, centre=True)
    assert sc.centred
    theta, beta = np.array([29.0, -0.29, 0.007]), np.array([-48.0, 0.47])
    np.testing.assert_allclose(sc.theta_to_user(sc.theta_to_internal(theta)), theta, rtol=1e-10)
    np.testing.assert_allclose(sc.beta_to_user(sc.beta_to_internal(beta)), beta, rtol=1e-12)
    # the internal template reproduces the user's covariance through A: Sigma_c = A Sigma A'
    m = sc.z_shift[0][1]
    A = np.array([[1.0, m], [0.0, 1.0]])
    T = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    tc = sc.theta_to_internal(theta)
    Tc = np.array([[tc[0], 0.0], [tc[1], tc[2]]])
    np.testing.assert_allclose(Tc @ Tc.T, A @ T @ T.T @ A.T, rtol=1e-10)
    # the Jacobian's theta block: each column dTc solves the differentiated identity
    # dTc Tc' + Tc dTc' = A (dT T' + T dT') A' (exact, no step); its beta block is M
    J = sc.jacobian(theta)
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1.0
        dT = np.array([[e[0], 0.0], [e[1], e[2]]])
        dTc = np.array([[J[0, i], 0.0], [J[1, i], J[2, i]]])
        want = A @ (dT @ T.T + T @ dT.T) @ A.T
        np.testing.assert_allclose(dTc @ Tc.T + Tc @ dTc.T, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(J[3:, 3:], [[1.0, m], [0.0, 1.0]], rtol=1e-15)
    assert not np.any(J[:3, 3:]) and not np.any(J[3:, :3])


def test_no_reference_model_is_centred():
    """Every other reference model is fitted exactly as before: centring is for a term's
    covariate beside its intercept and far from 0 (grouseticks' raw HEIGHT, mean 462 and SD 20,
    is only in X)."""
    for model_id in SPEC.index:
        s, d, *_ = model_inputs(model_id)
        design = lmmpy.glformula(s["formula"], d)
        shifted = model_id == "binomial_slope_shifted_maxfun"
        x_shift, z_shift = centring_shifts(design)
        assert bool(np.any(x_shift) or any(np.any(m) for m in z_shift)) == shifted, model_id
        scaling = ColumnScaling.of(design, centre=True)
        assert (scaling is not None and scaling.centred) == shifted, model_id
        # and nothing rescaled but the 1e3-scaled covariate
        assert (scaling is not None) == (shifted or model_id == "binomial_slope_scaled_grad"), model_id


def test_the_centring_rule_is_about_spread_not_size():
    """A covariate 9 SDs from 0 is left alone, 11 SDs away centred (CENTRE_RATIO = 10)."""
    d = load_data("binomial_slope")
    sd = float(np.std(d["x"]))
    for k, centred in ((0.9, False), (1.1, True)):
        d["x_m"] = d["x"] - d["x"].mean() + k * CENTRE_RATIO * sd
        design = lmmpy.glformula(FORMULA.format(x="x_m"), d)
        scaling = ColumnScaling.of(design, centre=True)
        assert (scaling is not None and scaling.centred) == centred


def test_profile_intervals_of_the_scaled_fit_are_the_unscaled_ones_scaled(fits):
    """The profile runs in the user's parameters: on x_k, the slope's sd and coefficient in
    units of 1e-3 (1e-4 relative: both profiles are splines through their own points)."""
    a, b = fits["x"].confint("profile"), fits["x_k"].confint("profile")
    unit = np.array([1.0, 1.0, 1000.0, 1.0, 1000.0])[:, None]
    np.testing.assert_allclose(b.to_numpy() * unit, a.to_numpy(), rtol=1e-4)


def test_profile_of_a_centred_fit_is_refused(fits):
    """On the shifted covariate the profile stops short (too narrow intervals): the centred fit
    refuses it with the reason; a rescaled (not centred) fit profiles, above."""
    with pytest.raises(LmmError, match="centred columns"):
        fits["x_shift"].confint("profile")
