r"""The analytic gradient of the profiled criteria in theta.

Write S = Z'WZ, P = Lambda' S, Omega = Lambda' S Lambda + I = L L', and dE = d Lambda / d theta_k
(nonzero only in its term's blocks: I_l (x) E_ab for the template entry (a, b)).  Then

    d log|L|^2     = 2 tr(Omega^{-1} P dE)                              (1)
    d log|R_X|^2   = 2 tr(dE G'(G P - R_X^{-1} X'WZ))                   (2, REML only)
    d pwrss        = -2 r'WZ dE u                                       (3, envelope theorem)

with G = R_X^{-1} L_XZ L_Z^{-1} and r the weighted residual at the penalised least-squares
solution (beta, u).  ML: d = (1) + n (3)/pwrss; REML: d = (1) + (2) + (n - p) (3)/pwrss.

(1) and (2) need only the k x k diagonal blocks, one per level, of Omega^{-1} P and G'(...):
tr(D dE) = sum_j D_j[b, a].  From the blocked factor, with W_11 = L_11^{-1} (per level) and
K = (L_tt L_tt')^{-1} (the tail's random-effects part):

    (Omega^{-1})_11 = W_11'W_11 + W_11' L_t1' K L_t1 W_11     (diagonal blocks only are needed,
    (Omega^{-1})_1t = -W_11' L_t1' K                           because S_11 is block diagonal)
    (Omega^{-1})_tt = K

Products with K and the sparse L_t1, P_t1 are taken sparse-times-dense, in chunks of the first
term's levels, so nothing of size q_1 x q_1 is formed.  No Lambda^{-1} appears, so the gradient
is exact on the boundary too.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from .deviance import LmmModel, theta_templates


def _template_grad(D, T_shape):
    """sum_j D_j[b, a] for each lower-triangle (a, b), in lme4's theta order."""
    k = T_shape
    Dsum = D.sum(axis=0)
    out = []
    for b in range(k):  # column of the template
        for a in range(b, k):  # row
            out.append(Dsum[b, a])
    return out


def _blockwise_right(A: sp.csr_matrix, T: np.ndarray, l: int) -> sp.csr_matrix:
    """A (I_l (x) T) for a sparse A with l k columns."""
    if T.shape[0] == 1:
        return (A * T[0, 0]).tocsr()
    return (A @ sp.kron(sp.identity(l, format="csr"), sp.csr_matrix(T))).tocsr()


def _column_pairs(A: sp.csr_matrix, budget: int):
    """All pairs of stored entries (ia, ib) that share a column of A, with that column:
    the entries of K that the scalar-term diagonals touch.  None beyond ``budget`` pairs."""
    counts = np.diff(A.tocsc().indptr)
    total = int((counts.astype(np.int64) ** 2).sum())
    if total > budget:
        return None
    order = np.argsort(A.indices, kind="stable").astype(np.int64)  # nnz ids grouped by column
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.repeat(np.arange(counts.size), counts ** 2)
    within = np.arange(total) - np.repeat(np.concatenate([[0], np.cumsum(counts ** 2)[:-1]]), counts ** 2)
    c = counts[col]
    ia = order[starts[col] + within // c]
    ib = order[starts[col] + within % c]
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    keep = rows[ia] <= rows[ib]  # K is symmetric: each unordered pair once, off-diagonal ones twice
    ia, ib, col = ia[keep], ib[keep], col[keep]
    ra, rb = rows[ia], rows[ib]
    hi, lo = np.maximum(ra, rb), np.minimum(ra, rb)
    order = np.lexsort((lo, hi))  # K is read in memory order: far fewer cache misses
    ia, ib, col, ra, rb, hi, lo = (x[order] for x in (ia, ib, col, ra, rb, hi, lo))
    weight = np.where(ra == rb, 1.0, 2.0)
    return dict(ia=ia, ib=ib, col=col, ra=ra, rb=rb, hi=hi, lo=lo, weight=weight)


def _general_tail(model, K, Pt1, Ptt, At1, L, W11, T1, O11, D1, templates, l1, k1, q_t, tail_sizes,
                  chunk_entries):
    """The chunked products with K for vector-valued terms (or too many pairs): updates O11
    and D1 in place and returns the tail's diagonal blocks."""
    Lt1_c, Pt1_c = L.Lt1_z.tocsc(), Pt1.tocsc()
    P1tT = _blockwise_right(At1, T1, l1).tocsc()  # (Lambda_1' A_1t)' = A_t1 Lambda_1
    # only the tail's diagonal blocks of F = O_t1 (Lambda_1' A_1t) are needed: for a stored
    # entry (r', c) of A_t1 Lambda_1 and each row r of r''s block, F[r, r'] += O_t1[r, c] v
    ks = np.concatenate([np.full(l * k, k) for l, k in tail_sizes])
    offset = np.concatenate([np.tile(np.arange(k), l) for l, k in tail_sizes])
    Fblocks = np.zeros((q_t, ks.max() if ks.size else 1))  # row r' -> F[block row d, r'] at column d
    step = max(1, chunk_entries // max(1, q_t * k1))
    for j0 in range(0, l1, step):
        j1 = min(l1, j0 + step)
        cols = slice(j0 * k1, j1 * k1)
        Y = np.asarray((Pt1_c[:, cols].T @ K).T).reshape(q_t, j1 - j0, k1)  # K P_t1 (chunk)
        w = W11[j0:j1]
        Rb = np.einsum("ij,lkj->lik", T1, w)  # T1 L_11^{-T} per level
        Y2 = np.einsum("rjc,jcd->rjd", Y, Rb)  # K L_t1 (chunk)
        Ld = Lt1_c[:, cols].toarray().reshape(q_t, j1 - j0, k1)
        O11[j0:j1] += np.einsum("jca,jcd,jdb->jab", w, np.einsum("rjc,rjd->jcd", Ld, Y2), w)
        D1[j0:j1] -= np.einsum("jca,jcd->jad", w, np.einsum("rjc,rjd->jcd", Ld, Y))
        Ot1 = -np.einsum("rjc,jcd->rjd", Y2, w).reshape(q_t, -1)
        part = P1tT[:, cols].tocoo()
        rp, cc, v = part.row, part.col, part.data
        base = rp - offset[rp]
        for d in range(Fblocks.shape[1]):
            ok = d < ks[rp]
            Fblocks[:, d] += np.bincount(rp[ok], Ot1[base[ok] + d, cc[ok]] * v[ok], minlength=q_t)
    out, start = [], 0
    for (l, k) in tail_sizes:
        seg = slice(start, start + l * k)
        KP = np.einsum("jcm,mjd->jcd", K[seg].reshape(l, k, q_t), Ptt[:, seg].reshape(q_t, l, k))
        # Fblocks[(level, c'), d] = F[(level, d), (level, c')]
        F = np.swapaxes(Fblocks[seg, :k].reshape(l, k, k), 1, 2)
        out.append(KP + F)
        start += l * k
    return out


def profiled_gradient(model: LmmModel, chunk_entries: int = 4_000_000,
                      pair_budget: int = 20_000_000, parts: bool = False) -> np.ndarray:
    """The gradient of the model's criterion at its current theta (L up to date); with
    ``parts``, its two pieces (d log-determinants, d pwrss) instead."""
    L, p, n = model.L, model.p, model.n
    q_t = model.q_tail
    templates = theta_templates(model.theta, model.ks)
    (l1, k1), tail_sizes = model.sizes[0], model.sizes[1:]
    T1 = templates[0]
    u, beta = L.solve_u_beta()

    # --- (3): Z'W r from the stored cross-products, r = y - X beta - Z Lambda u
    b_parts, pos = [], 0
    for (l, k), T in zip(model.sizes, templates):  # b = Lambda u, term by term
        b_parts.append((u[pos:pos + l * k].reshape(l, k) @ T.T).ravel())
        pos += l * k
    bvec = np.concatenate(b_parts)
    b1, bt = bvec[:l1 * k1], bvec[l1 * k1:]
    A11, At1 = model.A11, model.At1_z
    zr1 = model.At1_xy[-1] - model.At1_xy[:p].T @ beta - np.einsum("jcd,jd->jc", A11, b1.reshape(l1, k1)).ravel()
    if q_t:
        Att_zz = model.Att[:q_t, :q_t]
        zr1 = zr1 - At1.T @ bt
        zrt = model.Att[:q_t, -1] - model.Att[:q_t, q_t:q_t + p] @ beta - At1 @ b1 - Att_zz @ bt
        zr = np.concatenate([zr1, zrt])
    else:
        zr = zr1

    # --- (1): diagonal blocks of Omega^{-1} P
    W11 = L.L11.inverse().blocks  # (l1, k1, k1)
    P11 = np.einsum("ca,jcd->jad", T1, A11)
    O11 = np.einsum("jca,jcd->jad", W11, W11)
    D1 = np.zeros((l1, k1, k1))
    D_tail = []
    if q_t:
        Lz = np.ascontiguousarray(L.Ltt[:q_t, :q_t])
        Kl, info = lapack.dpotri(Lz, lower=1)  # lower triangle of K; the upper stays 0
        if info != 0:
            raise np.linalg.LinAlgError("cannot invert the tail block")
        lam = model._tail_lambda(templates)
        if lam is not None:
            Pt1 = sp.csr_matrix((At1.data * lam[model._at1_rows], At1.indices, At1.indptr), shape=At1.shape)
        else:
            Pt1 = (model._lambda_z_sparse(templates).T @ At1).tocsr()
        Ptt = model._lambda_t_rows(Att_zz, templates)
        scalar = k1 == 1 and lam is not None  # the common crossed/nested random intercepts
        pairs = None
        if scalar:
            if not hasattr(model, "_grad_pairs"):
                model._grad_pairs = _column_pairs(At1, pair_budget)
            pairs = model._grad_pairs
        if pairs is not None:
            # L_t1 = P_t1 diag(rho), rho = t_1 / L_11; everything below is a sum over pairs
            # of entries sharing a column: sum_ab L[a,j] K[a,b] L[b,j] and the like
            rho = T1[0, 0] * W11.ravel()
            ia, ib, col = pairs["ia"], pairs["ib"], pairs["col"]
            Kab = Kl[pairs["hi"], pairs["lo"]]
            pa, pb = Pt1.data[ia], Pt1.data[ib]
            wv = W11.ravel()
            LtKP = np.bincount(col, pa * pb * Kab * pairs["weight"], minlength=l1) * rho
            LtKL = LtKP * rho
            O11[:, 0, 0] += wv * wv * LtKL
            D1[:, 0, 0] -= wv * LtKP
            # F_r = -sum_c A[r,c] t_1 K[r,b] P[b,c] w_c rho_c: each unordered pair feeds both rows
            cw = T1[0, 0] * (wv * rho)[col] * Kab
            Fd = -(np.bincount(pairs["ra"], At1.data[ia] * pb * cw, minlength=q_t)
                   + np.bincount(pairs["rb"], At1.data[ib] * pa * cw * (pairs["weight"] - 1.0), minlength=q_t))
            # diag(K P_tt) from the lower triangle: sum_m K[r, m] P[m, r]
            KPd = (Kl * Ptt.T).sum(axis=1) + (Kl * Ptt).sum(axis=0) - np.diagonal(Kl) * np.diagonal(Ptt)
            D_tail = []
            start = 0
            for (l, k) in tail_sizes:
                seg = slice(start, start + l)
                D_tail.append((KPd[seg] + Fd[seg]).reshape(l, 1, 1))
                start += l
        else:
            K = Kl + np.tril(Kl, -1).T
            D_tail = _general_tail(model, K, Pt1, Ptt, At1, L, W11, T1, O11, D1, templates,
                                   l1, k1, q_t, tail_sizes, chunk_entries)
    D1 += np.einsum("jab,jbd->jad", O11, P11)
    D = [D1] + D_tail

    # --- (2): the REML correction G'(G P - R_X^{-1} X'WZ)
    if model.REML and p:
        G = L.fixed_correction()  # p x q
        GL = np.empty_like(G)
        start = 0
        for (l, k), T in zip(model.sizes, templates):
            seg = slice(start, start + l * k)
            GL[:, seg] = np.einsum("pjd,cd->pjc", G[:, seg].reshape(p, l, k), T).reshape(p, l * k)
            start += l * k
        q1 = l1 * k1
        GS1 = np.einsum("pjc,jcd->pjd", GL[:, :q1].reshape(p, l1, k1), A11).reshape(p, q1)
        XtZ = [model.At1_xy[:p]]
        if q_t:
            GS1 = GS1 + np.asarray((At1.T @ GL[:, q1:].T).T)
            GSt = np.asarray((At1 @ GL[:, :q1].T).T) + GL[:, q1:] @ Att_zz
            GS = np.hstack([GS1, GSt])
            XtZ.append(model.Att[q_t:q_t + p, :q_t])
        else:
            GS = GS1
        H = GS - sla.solve_triangular(L.RX, np.hstack(XtZ), lower=True, check_finite=False)
        start = 0
        for i, (l, k) in enumerate(model.sizes):
            seg = slice(start, start + l * k)
            D[i] = D[i] + np.einsum("pjc,pjd->jcd", G[:, seg].reshape(p, l, k), H[:, seg].reshape(p, l, k))
            start += l * k

    # --- assemble
    scale = (n - p if model.REML else n) / L.pwrss
    g_logdet, g_pwrss, start = [], [], 0
    for (l, k), Di in zip(model.sizes, D):
        zr_i = zr[start:start + l * k].reshape(l, k)
        u_i = u[start:start + l * k].reshape(l, k)
        dr2 = -2.0 * np.einsum("ja,jb->ab", zr_i, u_i)  # d pwrss / d T[a, b]
        g_ld = _template_grad(Di, k)
        idx = 0
        for bcol in range(k):
            for arow in range(bcol, k):
                g_logdet.append(2.0 * g_ld[idx])
                g_pwrss.append(dr2[arow, bcol])
                idx += 1
        start += l * k
    g_logdet, g_pwrss = np.array(g_logdet), np.array(g_pwrss)
    return (g_logdet, g_pwrss) if parts else g_logdet + scale * g_pwrss
