"""The tests' independent route to the log-determinant part of the gradient (the route lmmpy
used before the lead route): with S = Z'WZ, P = Lambda' S, Omega = Lambda' S Lambda + I = L L'
and dE = d Lambda / d theta_k,

    d log|L|^2     = 2 tr(Omega^{-1} P dE)                              (1)
    d log|R_X|^2   = 2 tr(dE G'(G P - R_X^{-1} X'WZ))                   (2, REML only)

with G = R_X^{-1} L_XZ L_Z^{-1}.  Only the k x k diagonal blocks, one per level, of Omega^{-1} P
and G'(...) are needed; from the blocked factor, with W_11 = L_11^{-1} and K = (L_tt L_tt')^{-1},

    (Omega^{-1})_11 = W_11'W_11 + W_11' L_t1' K L_t1 W_11
    (Omega^{-1})_1t = -W_11' L_t1' K
    (Omega^{-1})_tt = K

with the products of K and the sparse L_t1, P_t1 taken in chunks of the first term's levels.
"""

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from lmmpy.fit.deviance import LmmModel, theta_templates
from lmmpy.fit.gradient import _lead_inverse, _pwrss_gradient, _starts, _template_grad


def _blockwise_right(A: sp.csr_matrix, T: np.ndarray, l: int) -> sp.csr_matrix:
    """A (I_l (x) T) for a sparse A with l k columns."""
    if T.shape[0] == 1:
        return (A * T[0, 0]).tocsr()
    return (A @ sp.kron(sp.identity(l, format="csr"), sp.csr_matrix(T))).tocsr()


def _general_tail(model, K, Pt1, Ptt, At1, L, W11, T1, O11, D1, templates, l1, k1, q_t, tail_sizes, chunk_entries):
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
    for l, k in tail_sizes:
        seg = slice(start, start + l * k)
        KP = np.einsum("jcm,mjd->jcd", K[seg].reshape(l, k, q_t), Ptt[:, seg].reshape(q_t, l, k))
        # Fblocks[(level, c'), d] = F[(level, d), (level, c')]
        F = np.swapaxes(Fblocks[seg, :k].reshape(l, k, k), 1, 2)
        out.append(KP + F)
        start += l * k
    return out


def general_logdet_gradient(model: LmmModel, templates, chunk_entries: int) -> np.ndarray:
    """d(log|L|^2 [+ log|R_X|^2]) by (1) and (2) of the module docstring, any terms."""
    L, p = model.L, model.p
    q_t = model.q_tail
    (l1, k1), tail_sizes = model.sizes[0], model.sizes[1:]
    T1 = templates[0]
    A11, At1 = model.A11, model.At1_z
    # --- (1): diagonal blocks of Omega^{-1} P
    W11 = L.L11.inverse().blocks  # (l1, k1, k1)
    P11 = np.einsum("ca,jcd->jad", T1, A11)
    O11 = np.einsum("jca,jcd->jad", W11, W11)
    D1 = np.zeros((l1, k1, k1))
    D_tail = []
    if q_t:
        Att_zz = model.Att[:q_t, :q_t]
        K = _lead_inverse(model, model.L, q_t)
        lam = model.tail_lambda(templates)
        if lam is not None:
            Pt1 = sp.csr_matrix((At1.data * lam[model._at1_rows], At1.indices, At1.indptr), shape=At1.shape)
        else:
            Pt1 = (model._lambda_z_sparse(templates).T @ At1).tocsr()
        Ptt = model.lambda_t_rows(Att_zz, templates)
        D_tail = _general_tail(
            model, K, Pt1, Ptt, At1, L, W11, T1, O11, D1, templates, l1, k1, q_t, tail_sizes, chunk_entries
        )
    D1 += np.einsum("jab,jbd->jad", O11, P11)
    D = [D1] + D_tail

    # --- (2): the REML correction G'(G P - R_X^{-1} X'WZ)
    if model.REML and p:
        G = L.fixed_correction()  # p x q
        GL = np.empty_like(G)
        for (l, k), T, s in zip(model.sizes, templates, _starts(model.sizes)):
            seg = slice(s, s + l * k)
            GL[:, seg] = np.einsum("pjd,cd->pjc", G[:, seg].reshape(p, l, k), T).reshape(p, l * k)
        q1 = l1 * k1
        GS1 = np.einsum("pjc,jcd->pjd", GL[:, :q1].reshape(p, l1, k1), A11).reshape(p, q1)
        XtZ = [model.At1_xy[:p]]
        if q_t:
            GS1 = GS1 + np.asarray((At1.T @ GL[:, q1:].T).T)
            GSt = np.asarray((At1 @ GL[:, :q1].T).T) + GL[:, q1:] @ Att_zz
            GS = np.hstack([GS1, GSt])
            XtZ.append(model.Att[q_t : q_t + p, :q_t])
        else:
            GS = GS1
        H = GS - sla.solve_triangular(L.RX, np.hstack(XtZ), lower=True, check_finite=False)
        for i, ((l, k), s) in enumerate(zip(model.sizes, _starts(model.sizes))):
            seg = slice(s, s + l * k)
            D[i] = D[i] + np.einsum("pjc,pjd->jcd", G[:, seg].reshape(p, l, k), H[:, seg].reshape(p, l, k))
    return np.array([2.0 * g for (l, k), Di in zip(model.sizes, D) for g in _template_grad(Di, k)])


def general_gradient(model, chunk_entries: int = 4_000_000) -> np.ndarray:
    """The criterion's gradient by route (1)-(2) and lmmpy's d pwrss."""
    templates = theta_templates(model.theta, model.ks)
    u, beta = model.L.solve_u_beta()
    scale = (model.n - model.p if model.REML else model.n) / model.L.pwrss
    return general_logdet_gradient(model, templates, chunk_entries) + scale * _pwrss_gradient(model, templates, u, beta)
