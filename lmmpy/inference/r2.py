r"""Nakagawa's R² of a mixed model, as ``performance::r2_nakagawa`` (insight's get_variance)
computes it:

    R²_marginal = s²_f / (s²_f + s²_r + s²_d),   R²_conditional = (s²_f + s²_r) / (s²_f + s²_r + s²_d)

- s²_f = var(X beta-hat), the sample variance (n - 1) of the fixed part's fitted values;
- s²_r = sum over random-effects terms of mean_i x_i' Sigma_t x_i (Johnson's 2014 extension
  for random slopes), x_i the term's columns of the fixed-effects matrix (an intercept column
  added if X has none; a term's columns absent from X are left out, as insight does); terms
  with one level per observation are left out (for a GLMM they are overdispersion, added to
  s²_d as insight does);
  and, as insight looks each factor's covariance up by the factor's name, only the first term
  of a grouping factor counts: in ``(1 | g) + (0 + x | g)`` the slope's variance is left out
  (performance 0.10.2 / insight 0.19.0; tests/reference/toolkit/extra_r2_sleep_uncorr.json);
- s²_d, the distribution-specific variance (:func:`distribution_variance`): sigma² for an LMM,
  the latent-scale variance of the link for a GLMM.  For a Poisson GLMM with the log link it is
  the log-normal approximation log(1 + 1/mu), mu = exp(beta_0) of the *null model*: the same
  random-effects terms, prior weights and offset, the fixed part ``~ 1``, refitted by maximum
  likelihood (:func:`null_model_intercept`).  As in insight 0.19.0 (``insight::null_model``)
  the offset is kept, whether it came from ``offset(...)`` in the formula or from ``offset=``
  (checked: both give R's null intercept of tests/reference/toolkit/glmer/
  exposure_poisson_offset_r2.json), so mu is a mean count per unit of the offset's exposure.
  Below mu = 6 performance warns that the approximation may be unreliable, and so does this.

As in performance, a singular fit (a variance parameter theta_i with lower bound 0 below 1e-5)
has no s²_r: a warning, R²_marginal = s²_f / (s²_f + s²_d) and R²_conditional = NaN.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd

from ..errors import LmmError
from ..fit.glmm_driver import GlmerControl, optimize_glmer
from ..fit.pirls import GlmmModel

SINGULAR_TOL = 1e-5
# below this mean count of the null model performance warns that log(1 + 1/mu) may be unreliable
SMALL_POISSON_MEAN = 6.0


def distribution_variance(family: str, link: str, sigma: float = 1.0, null_intercept: float | None = None) -> float:
    """The distribution-specific (latent-scale) variance s²_d of Nakagawa's R², as performance's
    ``.compute_variance_distribution``:

    - gaussian (identity link): sigma²;
    - binomial: logit pi²/3, probit 1, cloglog pi²/6;
    - poisson: log link the log-normal approximation log(1 + 1/mu) with mu = exp(beta_0) from
      the null model (the same random effects, intercept only: ``null_intercept`` = its beta_0);
      sqrt link 0.25;
    - Gamma (log, inverse or identity link): the family's variance function at sigma, V(sigma) =
      sigma², sigma the fit's residual standard deviation (lme4's sqrt(pwrss / n)), as insight
      0.19.0 takes it.
    """
    fam, lk = str(family).lower(), str(link).lower()
    if fam == "gaussian" and lk == "identity":
        return float(sigma) ** 2
    if fam == "binomial":
        table = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}
        if lk in table:
            return table[lk]
    if fam == "gamma" and lk in ("log", "inverse", "identity"):
        return float(sigma) ** 2
    if fam == "poisson":
        if lk == "sqrt":
            return 0.25
        if lk == "log":
            if null_intercept is None:
                raise LmmError("the poisson (log link) distribution variance needs the null model's intercept")
            mu = math.exp(float(null_intercept))
            return math.log1p(1.0 / mu)  # log(1 + var(mu) / mu^2), var(mu) = mu
    raise LmmError(
        f"r2_nakagawa does not support the {family} family with the {link} link (yet): it computes the "
        "distribution-specific variance for gaussian (identity), binomial (logit, probit, cloglog), "
        "poisson (log, sqrt) and Gamma (log, inverse, identity) models"
    )


class R2Nakagawa:
    """``marginal`` and ``conditional`` R², with the variances they are made of."""

    def __init__(self, var_fixed: float, var_random: float, var_distribution: float):
        self.var_fixed, self.var_random, self.var_distribution = var_fixed, var_random, var_distribution
        if math.isnan(var_random):
            total = var_fixed + var_distribution
            self.marginal, self.conditional = var_fixed / total, math.nan
        else:
            total = var_fixed + var_random + var_distribution
            self.marginal = var_fixed / total
            self.conditional = (var_fixed + var_random) / total

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"R2": [self.conditional, self.marginal]}, index=pd.Index(["Conditional R2", "Marginal R2"], name="")
        )

    def __str__(self) -> str:
        # performance prints "# R2 for Mixed Models" with 3 decimals
        cond = "NA" if math.isnan(self.conditional) else f"{self.conditional:.3f}"
        return f"# R2 for Mixed Models\n\n  Conditional R2: {cond}\n     Marginal R2: {self.marginal:.3f}\n"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(float_format=lambda v: f"{v:.3f}")


def random_variance(
    X: np.ndarray, xnames: list, terms: list, covariances: list, n: int, observation_level=False
) -> float:
    """s²_r: sum over terms of mean_i x_i' Sigma x_i with x_i the term's columns of X (see the
    module's docstring); with ``observation_level`` the same sum over the terms with one level
    per observation instead (a GLMM's overdispersion, which insight adds to s²_d)."""
    names = list(xnames)
    if not any(nm.startswith("(Intercept)") for nm in names):
        X = np.column_stack([np.ones(X.shape[0]), X])
        names = ["(Intercept)", *names]
    total, seen = 0.0, set()
    for t, S in zip(terms, covariances):
        if (t.nlevels == n) != observation_level or t.group in seen:  # a factor's later terms: left out
            continue
        seen.add(t.group)
        keep = [i for i, c in enumerate(t.cnames) if c in names]
        if not keep:
            continue
        Z = X[:, [names.index(t.cnames[i]) for i in keep]]
        Sk = S[np.ix_(keep, keep)]
        total += float(np.einsum("ij,jk,ik->", Z, Sk, Z)) / X.shape[0]
    return total


def null_model_intercept(fit) -> float:
    """beta_0 of the null model of a GLMM fit: the fit's family, random-effects terms, prior
    weights, offset and nAGQ with the fixed part ``~ 1`` (see the module's docstring),
    fitted by lmmpy's glmer optimizer (:func:`lmmpy.fit.glmm_driver.optimize_glmer`)."""
    design = fit.design
    null_design = dataclasses.replace(
        design,
        X=np.ones((design.n, 1)),
        xnames=["(Intercept)"],
        dropped_columns=[],
        x_keep=None,
    )
    model = fit.model
    null_model = GlmmModel(null_design, fit.family, nAGQ=fit.nAGQ, pirls_tol=model.tol, pirls_max_iter=model.max_iter)
    # only beta_0 is wanted: no Hessian, no convergence checks (R's null refit of grouseticks
    # itself fails lme4's gradient check; its R2 does not depend on it)
    control = GlmerControl(calc_derivs=False, check_conv=False, pirls_tol=model.tol, pirls_max_iter=model.max_iter)
    opt = optimize_glmer(null_model, control=control)
    return float(np.asarray(opt.beta, dtype=float)[0])


def r2_nakagawa(fit, null_intercept: float | None = None) -> R2Nakagawa:
    """Nakagawa's marginal and conditional R² of ``fit`` (see the module's docstring).

    For a Poisson GLMM with the log link the null model is refitted to get its intercept,
    unless ``null_intercept`` gives it.  Families other than gaussian, binomial (logit, probit,
    cloglog), Poisson (log, sqrt) and Gamma (log, inverse, identity) raise :class:`LmmError`."""
    design = fit.design
    X = design.X
    var_fixed = float(np.var(X @ fit.fixef.to_numpy(), ddof=1))
    lower = design.theta_lower()
    if np.any(np.abs(fit.theta[lower == 0]) < SINGULAR_TOL):
        warnings.warn(
            "Can't compute the random-effect variances: some variance components are zero (a singular "
            "fit); as performance does, the marginal R2 leaves them out and the conditional R2 is NaN",
            UserWarning,
            stacklevel=2,
        )
        var_random = math.nan
    else:
        var_random = random_variance(X, design.xnames, design.reterms, fit.covariances, design.n)
    family = getattr(fit, "family", None)
    if family is None:
        var_dist = distribution_variance("gaussian", "identity", fit.sigma)
    else:
        fam, link = str(family.family).lower(), str(family.link_name).lower()
        distribution_variance(family.family, link, null_intercept=0.0)  # an unsupported family fails before the refit
        if fam == "poisson" and link == "log":
            if null_intercept is None:
                null_intercept = null_model_intercept(fit)
            mu = math.exp(null_intercept)
            if mu < SMALL_POISSON_MEAN:
                warnings.warn(
                    f"mu of {mu:.1f} is too close to zero, estimate of random effect variances may be unreliable "
                    "(the null model's mean count, in the distribution-specific variance log(1 + 1/mu))",
                    UserWarning,
                    stacklevel=2,
                )
        var_dist = distribution_variance(fam, link, getattr(fit, "sigma", 1.0), null_intercept)
        var_dist += random_variance(X, design.xnames, design.reterms, fit.covariances, design.n, observation_level=True)
    return R2Nakagawa(var_fixed, var_random, var_dist)
