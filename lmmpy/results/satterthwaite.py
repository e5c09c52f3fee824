r"""Satterthwaite's degrees of freedom for fixed-effect contrasts, as lmerTest computes them.

With the variance parameters varpar = (theta, sigma), the deviance not profiled over sigma,

    ML:    d(theta, sigma) = log|L_theta|^2 + n log(2 pi sigma^2) + pwrss(theta) / sigma^2
    REML:  d(theta, sigma) = log|L_theta|^2 + log|R_X|^2 + (n - p) log(2 pi sigma^2) + pwrss / sigma^2

(beta profiled out), A = 2 H^{-1} the asymptotic covariance of varpar (H the Hessian of d at
the optimum) and V(varpar) = sigma^2 (R_X R_X')^{-1} the covariance of beta-hat, a contrast c
has

    df = 2 (c'Vc)^2 / (g' A g),   g_j = c' (dV / d varpar_j) c.

H is the Jacobian of the analytic gradient of d (:mod:`lmmpy.fit.gradient`), and dV/dvarpar
a Jacobian of V, both by central differences refined by Richardson extrapolation (numDeriv's
method, which lmerTest uses for all of them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import stats

from ..fit.deviance import LOG2PI
from ..fit.gradient import profiled_gradient


def _deviance_vp(model, reml):
    n, p = model.n, model.p

    def f(vp):
        theta, sigma = vp[:-1], vp[-1]
        L = model.set_theta(theta).update().L
        m = n - p if reml else n
        val = L.logdet_L2 + m * (LOG2PI + 2 * np.log(sigma)) + L.pwrss / sigma ** 2 - model.log_w_sum
        return val + (L.logdet_RX2 if reml else 0.0)
    return f


def _deviance_vp_gradient(model, reml):
    """The gradient of d(theta, sigma) in (theta, sigma)."""
    m = model.n - (model.p if reml else 0)

    def g(vp):
        theta, sigma = vp[:-1], vp[-1]
        model.set_theta(theta).update()
        d_logdet, d_pwrss = profiled_gradient(model, parts=True)
        pwrss = model.L.pwrss
        return np.append(d_logdet + d_pwrss / sigma ** 2, 2 * m / sigma - 2 * pwrss / sigma ** 3)
    return g


def _cov_beta(model):
    def f(vp):
        RX = model.set_theta(vp[:-1]).update().L.RX
        inv = sla.solve_triangular(RX, np.eye(RX.shape[0]), lower=True)
        return vp[-1] ** 2 * inv.T @ inv
    return f


def _step(x):
    return 1e-4 * np.maximum(np.abs(x), 1e-2)


def richardson_jacobian(f, x):
    """d f / d x_j (f array-valued) by central differences at h and h/2, extrapolated."""
    x = np.asarray(x, float)
    out = []
    for j in range(x.size):
        def d(h):
            e = np.zeros_like(x)
            e[j] = h
            return (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h)
        h = _step(x)[j]
        out.append((4 * d(h / 2) - d(h)) / 3)
    return np.stack(out, axis=-1)


def richardson_hessian(f, x):
    """The Hessian of a scalar f as the Jacobian of its Richardson gradient."""
    grad = lambda y: richardson_jacobian(lambda z: np.array([f(z)]), y)[0]  # noqa: E731
    H = richardson_jacobian(grad, x)
    return (H + H.T) / 2


def varpar_covariance(fit):
    """A = 2 H^{-1}: the asymptotic covariance of (theta, sigma)."""
    vp = np.append(fit.theta, fit.sigma)
    H = richardson_jacobian(_deviance_vp_gradient(fit.model, fit.REML), vp)
    H = (H + H.T) / 2
    fit.model(fit.theta)
    return 2 * np.linalg.pinv(H), vp


def satterthwaite_table(fit) -> pd.DataFrame:
    """Estimate, Std. Error, df, t value and Pr(>|t|) of each fixed effect (lmerTest's summary)."""
    A, vp = varpar_covariance(fit)
    J = richardson_jacobian(_cov_beta(fit.model), vp)  # p x p x len(vp)
    fit.model(fit.theta)
    V = fit.vcov.to_numpy()
    rows = []
    for i, name in enumerate(fit.design.xnames):
        var = V[i, i]
        g = J[i, i, :]
        df = 2 * var ** 2 / (g @ A @ g)
        t = fit.fixef.iloc[i] / np.sqrt(var)
        rows.append((name, fit.fixef.iloc[i], np.sqrt(var), df, t, 2 * stats.t.sf(abs(t), df)))
    return pd.DataFrame(rows, columns=["term", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]).set_index("term")
