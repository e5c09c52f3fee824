r"""lmerTest's type III tests of the fixed-effect terms: the contrasts, and the F tests with
Satterthwaite's or Kenward-Roger's denominator df.

A term's type III hypothesis is L beta = 0 with L built from the over-parameterised design
(:func:`type3_contrasts`); F = b'(L V L')^{-1} b / q with b = L beta-hat and q = rank L.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .kenward_roger import lb_ddf, vcov_adjusted
from .satterthwaite import _contrast_df, _pieces


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
        V_adj, Phi, P_kr, W_kr = vcov_adjusted(fit)
        beta = fit.fixef.to_numpy()
    else:
        A, J, V, beta = _pieces(fit)
    sigma2 = fit.sigma**2
    rows: list[tuple] = []
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
            den_df = nus[0]
        else:
            E = float(np.sum(nus[nus > 2] / (nus[nus > 2] - 2)))
            den_df = 2 * E / (E - q) if E > q else np.nan
        rows.append((name, F * q * sigma2, F * sigma2, q, den_df, F, stats.f.sf(F, q, den_df)))
    return pd.DataFrame(rows, columns=["term", "Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]).set_index(
        "term"
    )
