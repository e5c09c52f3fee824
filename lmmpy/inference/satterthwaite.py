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
    fit.model(fit.theta)
    return 2 * np.linalg.pinv(H) / np.outer(m, m), vp


def _pieces(fit):
    """(A, dV/dvarpar, V, beta) at the fit's optimum."""
    A, vp = varpar_covariance(fit)
    m = _varpar_scale(fit)
    J = richardson_jacobian(lambda v: _cov_beta(fit.model)(v / m), vp * m) * m  # p x p x len(vp)
    fit.model(fit.theta)
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


def type3_contrasts(fit) -> dict:
    """lmerTest's type III contrasts, term -> L (rows: the term's hypotheses, columns: beta).

    L = t(ginv(X) rdX) with rdX the over-parameterised design (every factor level its own
    column); going from the highest-order terms down, a term's columns of L are made orthogonal
    to those of the terms containing it; the rows that are X's own columns are kept."""
    design = fit.design
    keep = design.x_keep if design.x_keep is not None else list(range(design.p))
    position = {col: i for i, col in enumerate(keep)}
    terms = [(t, [position[i] for i in idx if i in position]) for t, idx in design.fixed_terms()]
    X = design.X
    rd, rd_names = design.fixed_matrix_all_levels()
    L = np.linalg.pinv(X) @ rd  # p x r
    L = L.T  # r x p, rows: rdX's columns
    L[np.abs(L) < 1e-7 * max(1.0, np.abs(L).max())] = 0.0
    factors = {str(t): set(str(t).split(":")) for t, _ in terms}
    for t, cols in sorted(terms, key=lambda tc: -len(factors[str(tc[0])])):
        containing = [c for o, oc in terms if factors[str(t)] < factors[str(o)] for c in oc]
        if containing and cols:
            Xc = L[:, containing]
            coef, *_ = np.linalg.lstsq(Xc, L[:, cols], rcond=None)
            L[:, cols] = L[:, cols] - Xc @ coef
            L[np.abs(L) < 1e-7 * max(1.0, np.abs(L).max())] = 0.0
    rows = [rd_names.index(nm) for nm in design.xnames]
    L = L[rows]  # p x p
    out = {}
    for t, cols in terms:
        Lt = L[:, cols].T
        out[t] = Lt[np.abs(Lt).sum(axis=1) > 1e-8]
    return out


def anova_type3(fit, ddf: str = "satterthwaite") -> pd.DataFrame:
    """lmerTest's type III F tests, term by term, with Satterthwaite's or Kenward-Roger's df.

    With a term's contrasts L (:func:`type3_contrasts`), F = b'L'(LVL')^{-1}Lb / q.
    Satterthwaite: LVL' = P D P' splits the test into q independent 1-df contrasts with df nu_m,
    and DenDF = 2E / (E - q), E = sum nu_m / (nu_m - 2) (Fai & Cornelius, as lmerTest).
    Kenward-Roger: F with the adjusted covariance, DenDF from pbkrtest's Lb_ddf."""
    kr = ddf == "kenward-roger"
    if kr:
        from .kenward_roger import lb_ddf, vcov_adjusted
        V_adj, Phi, P_kr, W_kr = vcov_adjusted(fit)
        beta = fit.fixef.to_numpy()
    else:
        A, J, V, beta = _pieces(fit)
    sigma2 = fit.sigma ** 2
    rows = []
    for name, L in type3_contrasts(fit).items():
        q = L.shape[0]
        if q == 0:
            rows.append((name, np.nan, np.nan, 0, np.nan, np.nan, np.nan))
            continue
        b = L @ beta
        if kr:  # pbkrtest: F with the adjusted covariance, df from Lb_ddf
            F = float(b @ np.linalg.solve(L @ V_adj @ L.T, b)) / q
            ddf_kr = lb_ddf(L, Phi, P_kr, W_kr)
            rows.append((name, F * q * sigma2, F * sigma2, q, ddf_kr, F, stats.f.sf(F, q, ddf_kr)))
            continue
        M = L @ V @ L.T
        F = float(b @ np.linalg.solve(M, b)) / q
        d, P = np.linalg.eigh(M)
        nus = np.array([_contrast_df(P[:, m] @ L, A, J, V) for m in range(q)])
        if q == 1:
            ddf = nus[0]
        else:
            E = float(np.sum(nus[nus > 2] / (nus[nus > 2] - 2)))
            ddf = 2 * E / (E - q) if E > q else np.nan
        rows.append((name, F * q * sigma2, F * sigma2, q, ddf, F, stats.f.sf(F, q, ddf)))
    return pd.DataFrame(rows, columns=["term", "Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value",
                                       "Pr(>F)"]).set_index("term")
