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


def _deviance_vp_gradient(model, reml):
    """The gradient of d(theta, sigma) in (theta, sigma)."""
    m = model.n - (model.p if reml else 0)

    def g(vp):
        theta, sigma = vp[:-1], vp[-1]
        d_logdet, d_pwrss = model.gradient(theta, parts=True)
        pwrss = model.factor(theta).pwrss
        return np.append(d_logdet + d_pwrss / sigma**2, 2 * m / sigma - 2 * pwrss / sigma**3)

    return g


def _cov_beta(model):
    def f(vp):
        RX = model.factor(vp[:-1]).RX
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


def _varpar_scale(fit):
    """m with varpar_internal = m * varpar: theta's scale for the rescaled columns a badly
    scaled model was fitted on (:mod:`lmmpy.fit.scaling`), sigma's 1.  The differences are
    taken there, where their steps and pinv's cutoff are meant, and mapped back (exactly:
    m holds powers of two) by the chain rule."""
    return np.append(fit.theta_scale, 1.0)


def varpar_covariance(fit):
    """A = 2 H^{-1}: the asymptotic covariance of (theta, sigma)."""
    m = _varpar_scale(fit)
    vp = np.append(fit.theta, fit.sigma)
    grad = _deviance_vp_gradient(fit.model, fit.REML)
    H = richardson_jacobian(lambda v: grad(v / m) / m, vp * m)  # in varpar_internal
    H = (H + H.T) / 2
    return 2 * np.linalg.pinv(H) / np.outer(m, m), vp


def _pieces(fit):
    """(A, dV/dvarpar, V, beta) at the fit's optimum."""
    A, vp = varpar_covariance(fit)
    m = _varpar_scale(fit)
    J = richardson_jacobian(lambda v: _cov_beta(fit.model)(v / m), vp * m) * m  # p x p x len(vp)
    return A, J, fit.vcov.to_numpy(), fit.fixef.to_numpy()


def _contrast_df(c, A, J, V):
    """Satterthwaite df of the 1-df contrast c'beta."""
    g = np.einsum("i,ijk,j->k", c, J, c)
    return 2 * (c @ V @ c) ** 2 / (g @ A @ g)


def satterthwaite_table(fit) -> pd.DataFrame:
    """Estimate, Std. Error, df, t value and Pr(>|t|) of each fixed effect (lmerTest's summary)."""
    A, J, V, beta = _pieces(fit)
    rows = []
    for i, name in enumerate(fit.design.xnames):
        c = np.eye(len(beta))[i]
        df = _contrast_df(c, A, J, V)
        t = beta[i] / np.sqrt(V[i, i])
        rows.append((name, beta[i], np.sqrt(V[i, i]), df, t, 2 * stats.t.sf(abs(t), df)))
    return pd.DataFrame(rows, columns=["term", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]).set_index("term")
