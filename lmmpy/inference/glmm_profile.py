r"""Profile-likelihood intervals and profiles of a glmer fit, as lme4's ``profile.merMod`` and
``confint(method = "profile")`` make them for a generalized model.

The parameters are lme4's: per random-effects term the standard deviations and correlations of
Sigma = T T' (sigma is 1 for binomial and Poisson, so .sig01 of a scalar term is theta itself),
then the fixed effects beta.  With D the fit's deviance (Laplace or AGQ, :mod:`lmmpy.fit.pirls`)
as a function of these, D_hat its value at the optimum and, for parameter j held at v,

    d_j(v) = min over the other parameters of D,      zeta_j(v) = sign(v - v_hat) sqrt(d_j(v) - D_hat),

each profile is traced and inverted at -/+ qnorm((1 + level) / 2) exactly as for a linear
model (:func:`lmmpy.inference.profile.trace_profiles`: lme4's steps, spline inversion).  The
inner minimisation is L-BFGS-B over the other parameters with forward-difference gradients,
warm-started from the previous point; the standard deviations keep their bound 0 and the
correlations -1 and 1.  A covariance maps to theta as T = diag(sd) chol(C), C the correlations.

The deviance is evaluated on a model of its own with PIRLS converged to PROFILE_PIRLS_TOL:
with a non-canonical link (probit, cloglog) PIRLS converges linearly, and at the fit's own
tolerance the deviance is rough at ~1e-7, too rough for difference gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError
from ..fit.pirls import GlmmModel
from ..fit.status import Note
from ..formula.theta_layout import tril_positions
from .parameters import parameter_values, ran_par_names
from .profile import ALPHA_MAX, DELTA_CUTOFF, _Slice, trace_profiles

PROFILE_PIRLS_TOL = 1e-13
# forward-difference step in units of each coordinate's scale s = 1 / sqrt(curvature): the
# gradient's bias, h / 2 in units of s, moves the inner optimum by that much and its deviance by
# ~ (h / 2)^2 = 2.5e-9 per coordinate, far below what zeta needs (central differences: twice the cost)
GRAD_STEP = 1e-4
# the inner problems in units of s: a projected gradient below 3e-4 is within ~3e-4 of the
# optimum, ~1e-7 in deviance over a few coordinates (zeta ~ 2 to 3e-8); the differences' bias
# (5e-5) and rounding (~1e-12 relative deviance / GRAD_STEP) stay below it
INNER_OPTIONS = {"ftol": 1e-12, "gtol": 3e-4, "maxiter": 500}
SD_NUDGE = 0.1  # where an inner problem starts an sd that is 0 (on the link scale: a small sd)
CURV_STEP = 1e-3  # the step of the curvature's second differences, relative to the size of x


def _require_profilable(fit) -> None:
    if fit.family.has_dispersion:
        raise LmmError(
            f"profile intervals of a glmer fit are available for families without a dispersion "
            f"(binomial, Poisson), not for the {fit.family.family} family"
        )
    if fit.nAGQ == 0:
        raise LmmError("profile intervals need the Laplace or AGQ deviance: refit with nAGQ >= 1")


def _require_uncentred(fit) -> None:
    """The profile is traced in the user's parameters (lme4's sd, cor, beta) with diagonal
    scales only: on a covariate far from 0 (the fit's centring, :mod:`lmmpy.fit.scaling`)
    intercept and slope are nearly collinear, the inner L-BFGS-B stops short, and the
    intervals come out too narrow (a slope's 0.45-0.51 for 0.34-0.62).  A wrong interval is
    worse than none: such fits say so."""
    if any(n.kind is Note.CENTRED for n in fit.optsum.fit_notes):
        raise LmmError(
            "profile intervals of this fit are not available: it was made on centred columns (its notes say "
            "which), and on the data's own columns intercept and slope are too nearly collinear to profile; "
            "centre the covariate and refit (or use confint('wald') or 'boot')"
        )


def _variance_parameters(fit) -> np.ndarray:
    """lme4's sd and cor of each term, in theta's order (:func:`parameter_values`, before sigma)."""
    return parameter_values(fit)[: fit.theta.size]


def _theta_of(sv: np.ndarray, ks: list) -> np.ndarray | None:
    """theta from the sd and cor vector (None where the correlations are not positive definite)."""
    out, pos = [], 0
    for k in ks:
        m = k * (k + 1) // 2
        vals, pos = sv[pos : pos + m], pos + m
        if k == 1:
            out.append(vals)
            continue
        sd, C = np.zeros(k), np.eye(k)
        for (i, j), v in zip(tril_positions(k), vals):
            if i == j:
                sd[i] = v
            else:
                C[i, j] = C[j, i] = v
        try:
            T = sd[:, None] * np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            return None
        out.append(np.array([T[i, j] for i, j in tril_positions(k)]))
    return np.concatenate(out)


class _GlmmDeviance:
    """D as a function of x = (sd and cor, beta), on a model of its own (module docstring)."""

    def __init__(self, fit):
        control = fit.control
        self.model = GlmmModel(
            fit.design,
            fit.family,
            nAGQ=fit.nAGQ,
            pirls_tol=min(control.pirls_tol, PROFILE_PIRLS_TOL),
            pirls_max_iter=max(control.pirls_max_iter, 200),
        )
        self.model.u = fit._u.copy()
        self.nv = fit.theta.size
        self.ks = self.model.ks

    def __call__(self, x) -> float:
        theta = _theta_of(x[: self.nv], self.ks)
        if theta is None:
            return np.inf
        return self.model.deviance(theta, x[self.nv :])


def _scales(dev, x, bounds) -> np.ndarray:
    """1 / sqrt(d^2 D / dx_i^2) at the optimum by second differences (the size of x_i where
    the curvature is not positive), one-sided next to a bound."""
    f0 = dev(x)
    out = np.empty(x.size)
    for i in range(x.size):
        size = max(abs(x[i]), 1e-2)
        h = CURV_STEP * size
        steps = (-h, h) if x[i] - h >= bounds[i][0] else (h, 2 * h)
        f = []
        for t in steps:
            xt = x.copy()
            xt[i] += t
            f.append(dev(xt))
        if steps[0] < 0:
            d2 = (f[0] - 2 * f0 + f[1]) / h**2
        else:
            d2 = (f0 - 2 * f[0] + f[1]) / h**2
        out[i] = 1.0 / np.sqrt(d2) if np.isfinite(d2) and d2 > 0 else size
    return out


def _glmm_slices(fit, dev: _GlmmDeviance, delta: float) -> tuple[list, np.ndarray]:
    sv = _variance_parameters(fit)
    nv = sv.size
    x_hat = np.concatenate([sv, fit.beta])
    own: list[tuple[float, float]] = []  # each coordinate's range
    for t in fit.design.reterms:
        own.extend((0.0, np.inf) if i == j else (-1.0, 1.0) for i, j in tril_positions(t.k))
    own.extend((-np.inf, np.inf) for _ in range(fit.beta.size))
    scale = _scales(dev, x_hat, own)
    sd_slots = [i for i, (lo, _) in enumerate(own) if lo == 0.0]
    se = fit.se.to_numpy()

    def make(j):
        def bounds(v):
            out = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in own]
            out[j] = (v, v)
            return out

        def fg(x, v):
            x = x.copy()
            x[j] = v
            f = dev(x)
            g = np.zeros(x.size)
            if not np.isfinite(f):
                return np.inf, g
            for i in range(x.size):
                if i == j:
                    continue
                h = GRAD_STEP * scale[i]
                if x[i] + h > own[i][1]:  # a correlation at 1: the difference inwards
                    h = -h
                step = x.copy()
                step[i] += h
                g[i] = (dev(step) - f) / h
            return f, g

        if j < nv:
            hat = x_hat[j]
            lower, upper = own[j]
            if lower == 0.0:  # an sd: lme4's 1% step, or 1e-3 from an estimate on the bound
                step = 0.01 * hat if hat > 0 else 1e-3
            else:
                step = 0.01 * hat if hat != 0 else 1e-3
                if abs(hat + step) > 1:
                    step = -np.sign(hat) * 0.01
        else:
            hat, lower, upper = x_hat[j], -np.inf, np.inf
            step = delta * se[j - nv]  # lme4: delta standard errors

        def start(x0, v):
            # D depends on a scalar term's sd through sd^2 only, so an sd at 0 is a stationary
            # point of every inner problem: started there it would stay, where a positive sd
            # may fit better with x_j at v
            x0 = x0.copy()
            at_zero = [i for i in sd_slots if i != j and x0[i] == 0.0]
            x0[at_zero] = SD_NUDGE
            return x0

        return _Slice(
            "glmm",
            float(hat),
            lower,
            upper,
            float(step),
            x_hat.copy(),
            fg,
            bounds,
            start=start,
            inner_options=INNER_OPTIONS,
        )

    return [make(j) for j in range(x_hat.size)], scale


def _profile_glmm(fit, level: float, old_names: bool, progress: Any, n_points: int = 0):
    _require_profilable(fit)
    _require_uncentred(fit)
    names = ran_par_names(fit, old_names=old_names)[:-1] + list(fit.design.xnames)  # no sigma row
    dev = _GlmmDeviance(fit)
    x_hat = np.concatenate([_variance_parameters(fit), fit.beta])
    base = min(dev(x_hat), fit.objective)
    delta = np.sqrt(stats.chi2.ppf(1 - ALPHA_MAX, len(names))) * DELTA_CUTOFF
    slices, scale = _glmm_slices(fit, dev, delta)
    ends, grids = trace_profiles(slices, names, base, level, progress, n_points, scales=[scale] * len(slices))
    return names, ends, grids


def confint_profile_glmm(fit, level: float = 0.95, old_names: bool = True, progress: Any = None) -> pd.DataFrame:
    """Profile intervals of every parameter of a glmer fit (lme4's rows: .sig01, ... or with
    ``old_names=False`` sd_x|g and cor_x.y|g, then the fixed effects; no sigma row)."""
    names, ends, _ = _profile_glmm(fit, level, old_names, progress)
    pct = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
    return pd.DataFrame(ends, index=names, columns=pct)


def profile_glmm(fit, level: float = 0.99, n: int = 9, old_names: bool = True, progress: Any = None) -> pd.DataFrame:
    """zeta at ``n`` points across each parameter's ``level`` profile interval (.par, value, zeta)."""
    _, _, grids = _profile_glmm(fit, level, old_names, progress, n_points=n)
    return pd.DataFrame(grids, columns=[".par", "value", "zeta"])
