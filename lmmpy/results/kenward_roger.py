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

MAX_N = 3000


def _G_matrices(fit):
    """The derivative matrices G_i of V and the parameters gamma_i (pbkrtest's order)."""
    design = fit.design
    Gs, gammas = [], []
    for t, S in zip(design.reterms, fit.covariances):
        Z = t.Z().toarray()
        for j in range(t.k):
            for i in range(j, t.k):
                E = np.zeros((t.k, t.k))
                E[i, j] = E[j, i] = 1.0
                Zi = Z.reshape(design.n, t.nlevels, t.k)
                A = np.einsum("nla,ab,mlb->nm", Zi, E, Zi)
                Gs.append(A)
                gammas.append(S[i, j])
    w = design.weights
    Gs.append(np.diag(1.0 / w) if w is not None else np.eye(design.n))
    gammas.append(fit.sigma ** 2)
    return Gs, np.array(gammas)


def vcov_adjusted(fit):
    """(Phi_A, Phi, P list, W)."""
    if not fit.REML:
        raise LmmError("Kenward-Roger is defined for REML fits; refit with REML=True")
    if fit.design.n > MAX_N:
        raise LmmError(f"Kenward-Roger needs dense n x n matrices; n = {fit.design.n} is more than {MAX_N}")
    X = fit.design.X
    Gs, gam = _G_matrices(fit)
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
    return Phi + 2 * Phi @ U @ Phi, Phi, P, W


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
