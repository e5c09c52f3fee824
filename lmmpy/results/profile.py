r"""Profile-likelihood confidence intervals, as lme4's ``confint(method = "profile")``.

As in lme4, profiles use the ML deviance (a REML fit is refitted by ML first).  With
base = the ML deviance at the optimum, each parameter's signed root

    zeta(v) = sign(v - v_hat) sqrt(d(v) - base)

takes d(v) = the deviance minimised over all other parameters with this one held at v:

- standard deviations, correlations and sigma (lme4's ``sd_x|g``, ``cor_x.y|g``, ``sigma``): the
  deviance in those terms, log|L_theta|^2 + pwrss / sigma^2 + n log(2 pi sigma^2), with beta
  profiled out and theta = chol(Sigma) / sigma;
- a fixed effect beta_j: its column moved into the offset at value v, the profiled ML deviance
  of the reduced model minimised over theta.

The interval's ends are where zeta = -/+ z_(1+level)/2, found by root finding (lme4 interpolates a
spline through a grid of zeta values); a variance parameter whose profile never reaches the
bound gets its boundary (0 for a standard deviation, -1 or 1 for a correlation).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..fit.deviance import LOG2PI, LmmModel
from ..fit.scaling import on_internal_scale
from ..linalg.threads import with_fit_blas_threads
from .inference import parameter_vector, ran_par_names


def _psi_hat(fit):
    """sd's, correlations and sigma at the fit (lme4's order): the variance part of
    :func:`parameter_vector`."""
    return parameter_vector(fit).to_numpy()[: len(_kinds(fit))]


def _kinds(fit):
    """"sd", "cor" or "sigma" for each variance parameter, from lme4's names."""
    return [n.split("_", 1)[0] for n in ran_par_names(fit)]


def _theta_of(model, psi):
    """(sd, cor, sigma) -> theta, or None where the correlations are not a valid matrix."""
    sigma = psi[-1]
    theta, pos = [], 0
    for (_, k) in model.sizes:
        m = k * (k + 1) // 2
        block = psi[pos:pos + m]
        pos += m
        C = np.eye(k)
        sd = np.zeros(k)
        idx = 0
        for j in range(k):
            for i in range(j, k):
                if i == j:
                    sd[i] = block[idx]
                else:
                    C[i, j] = C[j, i] = block[idx]
                idx += 1
        try:
            Lc = np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            return None
        T = (sd[:, None] * Lc) / sigma
        for j in range(k):
            theta.extend(T[j:, j])
    return np.array(theta)


def _parameter_scale(fit):
    """m with internal = m * parameter, for the variance parameters and then the fixed effects:
    their scales for the rescaled columns a badly scaled model was fitted on
    (:mod:`lmmpy.fit.scaling`: sd_s = d sd, beta_s = s beta), 1 for correlations and sigma.
    Profiles are searched there, where the optimizers' steps and the root finder's tolerances
    are meant."""
    scaling = fit.optsum.scaling
    if scaling is None:
        return np.ones(len(_kinds(fit)) + fit.design.p)
    sd = [d[i] if i == j else 1.0 for d in scaling.z for j in range(d.size) for i in range(j, d.size)]
    return np.concatenate([sd, [1.0], scaling.x])


def _varpar_deviance(model, scale=1.0):
    """The deviance in psi_internal = scale * psi."""
    def dev(psi):
        psi = psi / scale
        if psi[-1] <= 0 or np.any(~np.isfinite(psi)):
            return np.inf
        theta = _theta_of(model, psi)
        if theta is None:
            return np.inf
        try:
            L = model.factor(theta)
        except np.linalg.LinAlgError:  # theta so extreme the factor breaks down
            return np.inf
        s2 = psi[-1] ** 2
        return L.logdet_L2 + L.pwrss / s2 + model.n * (LOG2PI + np.log(s2)) - model.log_w_sum
    return dev


def _bounds(kinds):
    return [(0.0, None) if k == "sd" else (-1.0, 1.0) if k == "cor" else (1e-12, None) for k in kinds]


def _zeta_varpar(model, psi_hat, base, i, kinds, scale=1.0):
    """zeta of parameter i, in psi_internal = scale * psi (psi_hat and v too)."""
    dev = _varpar_deviance(model, scale)
    others = [j for j in range(psi_hat.size) if j != i]
    bnds = [b for j, b in enumerate(_bounds(kinds)) if j != i]
    start = {"x": psi_hat[others].copy()}

    def zeta(v):
        def f(x):
            psi = psi_hat.copy()
            psi[others] = x
            psi[i] = v
            return dev(psi)
        if others:
            with np.errstate(invalid="ignore"):  # differences across an infinite deviance (|cor| -> 1)
                r = optimize.minimize(f, start["x"], method="L-BFGS-B", jac="3-point", bounds=bnds,
                                      options={"ftol": 1e-14, "gtol": 1e-9})
                # L-BFGS-B can stop ~1e-3 short in the deviance on flat ridges: polish
                r2 = optimize.minimize(f, r.x, method="Nelder-Mead", bounds=bnds,
                                       options={"xatol": 1e-9, "fatol": 1e-12, "maxfev": 2000})
            r = r2 if r2.fun < r.fun else r
            val = r.fun
            if np.isfinite(val):
                start["x"] = r.x  # warm start for the next point
        else:
            val = f(np.array([]))
        return np.sign(v - psi_hat[i]) * np.sqrt(max(0.0, val - base))
    return zeta


def _zeta_fixed(fit_ml, j, base, scale=1.0):
    """zeta of beta_j, in beta_j internal = scale * beta_j (v too)."""
    d = fit_ml.design
    keep = [c for c in range(d.p) if c != j]
    xj = d.X[:, j]
    off0 = d.offset if d.offset is not None else np.zeros(d.n)
    start = {"theta": fit_ml.theta.copy()}
    from ..fit.optimize import optimize_lmm

    def zeta(v):
        design = dataclasses.replace(d, X=d.X[:, keep], xnames=[d.xnames[c] for c in keep],
                                     offset=off0 + xj * (v / scale))
        model = LmmModel(design, REML=False)
        opt = on_internal_scale(model, lambda m, s: optimize_lmm(m, theta0=s, optimizer="l-bfgs-b"), start["theta"])
        start["theta"] = opt.theta
        return np.sign(v - fit_ml._beta[j] * scale) * np.sqrt(max(0.0, opt.fmin - base))
    return zeta


def _end(zeta, hat, target, step, limit):
    """The point where zeta = target, searched from hat in steps of ``step`` up to ``limit``."""
    a, za = hat, 0.0
    for _ in range(60):
        b = a + step
        if limit is not None and ((step > 0 and b >= limit) or (step < 0 and b <= limit)):
            b = limit
            zb = zeta(b)
            if (zb - target) * (za - target) > 0:
                return limit  # the profile does not reach the bound: the boundary is the end
            return optimize.brentq(lambda v: zeta(v) - target, a, b, xtol=1e-10, rtol=1e-10)
        zb = zeta(b)
        if (zb - target) * (za - target) <= 0:
            return optimize.brentq(lambda v: zeta(v) - target, a, b, xtol=1e-10, rtol=1e-10)
        a, za = b, zb
        step *= 1.6
    return np.nan


@with_fit_blas_threads
def confint_profile(fit, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals for every parameter, lme4's names (oldNames = FALSE)."""
    import warnings
    z = stats.norm.ppf(0.5 + level / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_ml = fit.refit(fit.design.y, REML=False) if fit.REML else fit
    base = fit_ml.objective
    kinds = _kinds(fit_ml)
    m = _parameter_scale(fit_ml)  # searched in the internal parameters, the ends mapped back
    psi_hat = _psi_hat(fit_ml) * m[:len(kinds)]
    names = ran_par_names(fit_ml) + list(fit_ml.fixef.index)
    rows = []
    for i, kind in enumerate(kinds):
        zeta = _zeta_varpar(fit_ml.model, psi_hat, base, i, kinds, m[:len(kinds)])
        scale = max(abs(psi_hat[i]), 1e-3) * 0.1 if kind != "cor" else 0.05
        lo_lim, hi_lim = {"sd": (0.0, None), "cor": (-1.0, 1.0), "sigma": (1e-12, None)}[kind]
        rows.append((_end(zeta, psi_hat[i], -z, -scale, lo_lim) / m[i], _end(zeta, psi_hat[i], z, scale, hi_lim) / m[i]))
    se = fit_ml.se.to_numpy()
    for j in range(fit_ml.design.p):
        mj = m[len(kinds) + j]
        zeta = _zeta_fixed(fit_ml, j, base, mj)
        b, step = fit_ml._beta[j] * mj, 0.5 * se[j] * mj
        rows.append((_end(zeta, b, -z, -step, None) / mj, _end(zeta, b, z, step, None) / mj))
    pct = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
    return pd.DataFrame(rows, index=names, columns=pct)


@with_fit_blas_threads
def profile(fit, level: float = 0.99, n: int = 9) -> pd.DataFrame:
    """The profiles themselves: for every parameter, zeta at ``n`` points across its
    ``level`` profile interval (long format: .par, value, zeta), as lme4's profile() data."""
    import warnings
    ci = confint_profile(fit, level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_ml = fit.refit(fit.design.y, REML=False) if fit.REML else fit
    base, m, kinds = fit_ml.objective, _parameter_scale(fit_ml), _kinds(fit_ml)
    psi_hat = _psi_hat(fit_ml) * m[:len(kinds)]
    rows = []
    for i, name in enumerate(ci.index):
        lo, hi = ci.iloc[i]
        zeta = (_zeta_varpar(fit_ml.model, psi_hat, base, i, kinds, m[:len(kinds)]) if i < len(kinds)
                else _zeta_fixed(fit_ml, i - len(kinds), base, m[i]))
        for v in np.linspace(lo, hi, n):
            rows.append((name, v, zeta(v * m[i])))
    return pd.DataFrame(rows, columns=[".par", "value", "zeta"])
