r"""Kenward-Roger: the adjusted covariance of beta-hat and the denominator df of contrasts,
as pbkrtest (vcovAdj, Lb_ddf) computes them for REML fits.

V = sum_i gamma_i G_i over the covariance parameters gamma (each term's variances and
covariances, then the residual variance; G_i = Z_t (I (x) E_ab) Z_t', and I for the residual).
With Phi = (X'V^{-1}X)^{-1}, P_i = -X'V^{-1}G_iV^{-1}X, Q_ij = X'V^{-1}G_iV^{-1}G_jV^{-1}X and
W = 2 IE2^{-1}, IE2_ij = tr(V^{-1}G_iV^{-1}G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j):

    Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi

and a contrast L gets Kenward and Roger's (1997) df m from A1, A2 of Theta = L'(L Phi L')^{-1}L.
The matrices are n x n and dense, as in pbkrtest, so this is for n up to a few thousand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError
from ..formula.theta_layout import tril_positions

MAX_N = 3000


def _column_scales(fit):
    """The scales of X's and of each term's columns the fit was made on (lmmpy.fit.scaling:
    user column = internal column * scale), all ones for a model fitted on its own columns."""
    scaling = fit.optsum.scaling
    if scaling is None:
        return np.ones(fit.design.p), [np.ones(t.k) for t in fit.design.reterms]
    return scaling.x, list(scaling.z)


def _G_matrices(fit, zscales):
    """The derivative matrices G_i of V and the parameters gamma_i (pbkrtest's order), for the
    term columns divided by ``zscales`` (gamma_i then multiplied by d_a d_b; also returned)."""
    design = fit.design
    Gs, gammas, factors = [], [], []
    for t, S, d in zip(design.reterms, fit.covariances, zscales):
        Z = t.Z().toarray() / np.tile(d, t.nlevels)
        for i, j in tril_positions(t.k):
            E = np.zeros((t.k, t.k))
            E[i, j] = E[j, i] = 1.0
            Zi = Z.reshape(design.n, t.nlevels, t.k)
            A = np.einsum("nla,ab,mlb->nm", Zi, E, Zi)
            Gs.append(A)
            gammas.append(S[i, j] * d[i] * d[j])
            factors.append(d[i] * d[j])
    w = design.weights
    Gs.append(np.diag(1.0 / w) if w is not None else np.eye(design.n))
    gammas.append(fit.sigma**2)
    factors.append(1.0)
    return Gs, np.array(gammas), np.array(factors)


def vcov_adjusted(fit):
    """(Phi_A, Phi, P list, W).

    A badly scaled model is worked on the rescaled columns it was fitted on, X_s = X / x and
    Z_s = Z / d (W's eigenvalue test and inverse are meant there), and mapped back exactly
    (powers of two): Phi = Phi_s / (x x'), P_i = g_i diag(x) P_i,s diag(x) and
    W = W_s / (g g') with g_i = d_a d_b the factor of gamma_i; Kenward-Roger's df are
    invariant under these maps."""
    if not fit.REML:
        raise LmmError("Kenward-Roger is defined for REML fits; refit with REML=True")
    if fit.design.n > MAX_N:
        raise LmmError(f"Kenward-Roger needs dense n x n matrices; n = {fit.design.n} is more than {MAX_N}")
    xscale, zscales = _column_scales(fit)
    X = fit.design.X / xscale
    Gs, gam, gfac = _G_matrices(fit, zscales)
    V = sum(g * G for g, G in zip(gam, Gs))
    Vinv = np.linalg.inv(V)
    VinvX = Vinv @ X
    Phi = np.linalg.inv(X.T @ VinvX)
    H = [G @ Vinv for G in Gs]  # G_i V^{-1}
    O = [h @ X for h in H]  # G_i V^{-1} X
    k = len(Gs)
    P = [-(o.T @ VinvX) for o in O]
    Q = {(r, s): O[r].T @ Vinv @ O[s] for r in range(k) for s in range(r, k)}
    IE2 = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ktr = np.sum(H[i] * H[j].T)
            IE2[i, j] = IE2[j, i] = ktr - 2 * np.sum(Phi * Q[i, j]) + np.sum((Phi @ P[i]) * (P[j] @ Phi))
    W = 2 * (np.linalg.inv(IE2) if np.min(np.abs(np.linalg.eigvalsh(IE2))) > 1e-10 else np.linalg.pinv(IE2))
    U = np.zeros_like(Phi)
    for i in range(k):
        for j in range(i, k):
            term = W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j])
            U += term if i == j else term + term.T
    xx = np.outer(xscale, xscale)
    return ((Phi + 2 * Phi @ U @ Phi) / xx, Phi / xx, [g * p * xx for g, p in zip(gfac, P)], W / np.outer(gfac, gfac))


def lb_ddf(L, Phi, P, W):
    """Kenward-Roger denominator df of the contrasts L (q x p), pbkrtest's Lb_ddf."""
    L = np.atleast_2d(L)
    q = L.shape[0]
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    k = len(P)
    A1 = A2 = 0.0
    for i in range(k):
        for j in range(i, k):
            e = 1.0 if i == j else 2.0
            ui, uj = TP @ P[i] @ Phi, TP @ P[j] @ Phi
            A1 += e * W[i, j] * np.trace(ui) * np.trace(uj)
            A2 += e * W[i, j] * np.sum(ui * uj.T)
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    d = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / d, (q - g) / d, (q + 2 - g) / d
    v0 = 1 + c1 * B
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    rho = (1 / q) * ((1 - A2 / q) / (1 - c2 * B)) ** 2 * v0 / (1 - c3 * B)
    return 4 + (q + 2) / (q * rho - 1)


def kenward_roger_table(fit) -> pd.DataFrame:
    """Estimate, Std. Error (adjusted), df, t value and Pr(>|t|), as lmerTest's KR summary."""
    PhiA, Phi, P, W = vcov_adjusted(fit)
    beta = fit.fixef.to_numpy()
    rows = []
    for i, name in enumerate(fit.design.xnames):
        Lrow = np.eye(len(beta))[i]
        se = np.sqrt(PhiA[i, i])
        df = lb_ddf(Lrow, Phi, P, W)
        t = beta[i] / se
        rows.append((name, beta[i], se, df, t, 2 * stats.t.sf(abs(t), df)))
    return pd.DataFrame(rows, columns=["term", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]).set_index("term")
