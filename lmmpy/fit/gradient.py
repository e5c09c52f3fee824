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
term's levels, so nothing of size q_1 x q_1 is formed.  This route serves models without a
tail (one term) and checks the cheaper one below.

The lead route, for models with a tail: both log-determinants at once through the lead
M = [Lambda'Z'Z Lambda + I, Lambda'Z'X; X'Z Lambda, X'X] (REML; Omega alone for ML), whose
inverse's tail block K' = (L_lead L_lead')^{-1} is one LAPACK dpotri.  With T_1 the first
term's template, A_11j its cross-product block for level j, O_j = T_1'A_11j T_1 + I,
V_j = T_1 O_j^{-1} T_1', A_t1j the tail's cross-products with level j and C = Lambda_t K' Lambda_t',

    d/dT_1[a,b] = 2 sum_j X_j[b, a],
        X_j = O_j^{-1} T_1' A_11j + O_j^{-1} T_1' Q_j (V_j A_11j - I),  Q_j = A_t1j' C A_t1j   (4)
    d/dT_ab     = 2 sum_j (K' Lambda_t' A~)_jj[b, a]    over the levels j of a tail term   (5)

with A~ = A_tt - A_t1 blockdiag(V) A_t1' the tail's Schur complement before Lambda_t (Q and
A~ on A_t1's fixed pattern of pairs, :class:`lmmpy.linalg.gram.WeightedGram`).  (4) and (5) are
the diagonal blocks of M^{-1} D A (D = diag(Lambda, I), A = [Z X]'[Z X]) worked out with the
blocked inverse; they need no products of K' with sparse matrices.  For a scalar first term
(4) is 2 t (sum_j a_j w_j^2 - sum_j w_j^4 Q_j) with w_j = 1 / L_11[j].
Neither route has a Lambda^{-1}, so the gradient is exact on the boundary too.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from .deviance import LmmModel, mirror_lower, theta_templates


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


def _pwrss_gradient(model: LmmModel, templates, u, beta) -> np.ndarray:
    """(3): d pwrss / d theta = -2 (Z'W r)' dLambda u, with Z'W r from the stored cross-products
    (r = y - X beta - Z Lambda u)."""
    p, q_t = model.p, model.q_tail
    (l1, k1) = model.sizes[0]
    b = np.concatenate([(u[s:s + l * k].reshape(l, k) @ T.T).ravel()  # b = Lambda u, term by term
                        for (l, k), T, s in zip(model.sizes, templates, _starts(model.sizes))])
    b1, bt = b[:l1 * k1], b[l1 * k1:]
    A11, At1 = model.A11, model.At1_z
    zr = model.At1_xy[-1] - model.At1_xy[:p].T @ beta - np.einsum("jcd,jd->jc", A11, b1.reshape(l1, k1)).ravel()
    if q_t:
        zrt = (model.Att[:q_t, -1] - model.Att[:q_t, q_t:q_t + p] @ beta - At1 @ b1
               - model.Att_zz @ bt)
        zr = np.concatenate([zr - At1.T @ bt, zrt])
    out = []
    for (l, k), s in zip(model.sizes, _starts(model.sizes)):
        dr2 = -2.0 * zr[s:s + l * k].reshape(l, k).T @ u[s:s + l * k].reshape(l, k)  # d pwrss / d T[a, b]
        out.extend(dr2[a, bc] for bc in range(k) for a in range(bc, k))
    return np.array(out)


def _starts(sizes):
    return np.concatenate([[0], np.cumsum([l * k for l, k in sizes])[:-1]]).astype(int)


def _lead_inverse(model: LmmModel, m: int, full: bool = True) -> np.ndarray:
    """K' = (L_lead L_lead')^{-1} for the leading m rows of the tail block: symmetric, or
    (not ``full``) its lower triangle with zeros above."""
    U = model._buffer("lead", (m, m), order="F")
    np.copyto(U, model.L.Ltt[:m, :m].T)  # upper triangular, Fortran order
    Ki, info = lapack.dpotri(U, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError("cannot invert the tail block")
    K = Ki.T  # lower triangle in C order; the rest is 0
    return mirror_lower(K) if full else K


def _lead_parts(model: LmmModel, templates) -> dict:
    """What the lead route needs: K' (lower triangle, or symmetric for vector-valued tail terms),
    C = Lambda_t K' Lambda_t' (lower triangle), Q_j = A_t1j' C A_t1j, O_j^{-1}, V and the gram's
    values at V (see the module docstring)."""
    q, p = model.q_tail, model.p
    m = q + (p if model.REML else 0)
    (l1, k1) = model.sizes[0]
    T1 = templates[0]
    W = model.L.L11.inverse().blocks
    O_inv = np.einsum("lji,ljk->lik", W, W)  # Omega_11j^{-1}
    V = np.einsum("ij,ljk,mk->lim", T1, O_inv, T1)  # T1 Omega_11j^{-1} T1'
    if k1 == 1:
        V = V.reshape(l1)
    key, values = model._schur_values
    if key != T1.tobytes():
        values = model.gram.values(V)
    lam = model._tail_lambda(templates)
    K = _lead_inverse(model, m, full=lam is None)
    C = model._buffer("C", (m, m))
    if lam is not None:  # Lambda_t is diagonal: C = Lambda_t K' Lambda_t' on the lower triangle only
        np.multiply(K, lam[:m, None], out=C)
        C *= lam[None, :m]
    else:
        np.copyto(C, K)
        model._lambda_t_sandwich(C, templates, transpose=True)
    # Q_j over the lead: the random effects, and X for REML
    Q = model.gram.level_products(C).reshape(l1, k1, k1)
    if m > q:
        Ax = model.At1_xy[:p].reshape(p, l1, k1)
        G = np.asarray(model.At1_z.T @ C[q:m, :q].T).T.reshape(p, l1, k1)  # C_xz A_z
        Cxx = np.tril(C[q:m, q:m])
        Cxx = Cxx + np.tril(Cxx, -1).T
        cross = np.einsum("plc,pld->lcd", Ax, G)
        Q += cross + np.swapaxes(cross, 1, 2) + np.einsum("plc,pr,rld->lcd", Ax, Cxx, Ax)
    return dict(m=m, K=K, C=C, Q=Q, O_inv=O_inv, V=V, values=values, lam=lam)


def lead_cond_cov_sums(model: LmmModel) -> list:
    """For a model with a tail: per term, the sum over its levels of the k x k diagonal blocks
    of (L_theta L_theta')^{-1} (ML) or of M^{-1}'s random-effects part (REML), what the EM
    algorithm needs, from the lead's inverse: O_j^{-1} + O_j^{-1} T1' Q_j T1 O_j^{-1} for the
    first term (the blocked inverse), K's diagonal blocks for the others."""
    templates = theta_templates(model.theta, model.ks)
    parts = _lead_parts(model, templates)
    T1, O_inv, K = templates[0], parts["O_inv"], parts["K"]
    OT = np.einsum("lij,kj->lik", O_inv, T1)  # O_j^{-1} T1'
    sums = [(O_inv + np.einsum("lij,ljk,lmk->lim", OT, parts["Q"], OT)).sum(axis=0)]
    start = 0
    for (l, k) in model.sizes[1:]:
        first = start + np.arange(l) * k
        sums.append(np.array([[K[first + c, first + d].sum() for d in range(k)] for c in range(k)]))
        start += l * k
    return sums


def _lead_logdet_gradient(model: LmmModel, templates) -> np.ndarray:
    """d(log|L|^2 [+ log|R_X|^2]) by (4) and (5) of the module docstring."""
    (l1, k1) = model.sizes[0]
    T1, A11 = templates[0], model.A11
    parts = _lead_parts(model, templates)
    m, K, C, Q, O_inv, V, values, lam = (parts[x] for x in ("m", "K", "C", "Q", "O_inv", "V", "values", "lam"))
    scalar = lam is not None
    # (4): X_j = O_j^{-1} T1' A_11j + O_j^{-1} T1' Q_j (V_j A_11j - I)
    OT = np.einsum("lij,kj->lik", O_inv, T1)  # O_j^{-1} T1'
    VA = np.einsum("lij,ljk->lik", V.reshape(l1, k1, k1), A11) - np.eye(k1)
    X = np.einsum("lij,ljk->lik", OT, A11) + np.einsum("lij,ljk,lkm->lim", OT, Q, VA)
    grads = [2.0 * g for g in _template_grad(X, k1)]
    # (5): the diagonal blocks of K' Lambda_t' A~ over each tail term
    if scalar:  # diag(K' diag(lam) A~) from lower triangles: sum_m K[i,m] lam_m A~[m,i]
        lam = lam[:m]
        P = model.weighted_tail_schur(V, K, values, out=C)
        # (einsum, not BLAS gemv: a threaded gemv here slows the next LAPACK call twofold)
        D_all = np.einsum("ij,j->i", P, lam) + np.einsum("ij,i->j", P, lam) - np.diagonal(P) * lam
    else:  # (K' Lambda_t' A~)[i, j] = sum_m K'[i, m] (A~ Lambda_t)[j, m]: rows with rows
        N = model.Att.shape[0]
        At = model.tail_schur(V, full=True, out=model._buffer("schur", (N, N)), values=values)[:m, :m]
        Yt = model._lambda_t_cols(At, templates)
    start = 0
    for (l, k) in model.sizes[1:]:
        seg = slice(start, start + l * k)
        if scalar:
            D = D_all[seg].reshape(l, 1, 1)
        else:
            D = np.einsum("lcm,ldm->lcd", K[seg].reshape(l, k, m), Yt[seg].reshape(l, k, m))
        grads.extend(2.0 * g for g in _template_grad(D, k))
        start += l * k
    return np.array(grads)


def _general_logdet_gradient(model: LmmModel, templates, chunk_entries: int) -> np.ndarray:
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
        K = _lead_inverse(model, q_t)
        lam = model._tail_lambda(templates)
        if lam is not None:
            Pt1 = sp.csr_matrix((At1.data * lam[model._at1_rows], At1.indices, At1.indptr), shape=At1.shape)
        else:
            Pt1 = (model._lambda_z_sparse(templates).T @ At1).tocsr()
        Ptt = model._lambda_t_rows(Att_zz, templates)
        D_tail = _general_tail(model, K, Pt1, Ptt, At1, L, W11, T1, O11, D1, templates,
                               l1, k1, q_t, tail_sizes, chunk_entries)
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
            XtZ.append(model.Att[q_t:q_t + p, :q_t])
        else:
            GS = GS1
        H = GS - sla.solve_triangular(L.RX, np.hstack(XtZ), lower=True, check_finite=False)
        for i, ((l, k), s) in enumerate(zip(model.sizes, _starts(model.sizes))):
            seg = slice(s, s + l * k)
            D[i] = D[i] + np.einsum("pjc,pjd->jcd", G[:, seg].reshape(p, l, k), H[:, seg].reshape(p, l, k))
    return np.array([2.0 * g for (l, k), Di in zip(model.sizes, D) for g in _template_grad(Di, k)])


def profiled_gradient(model: LmmModel, chunk_entries: int = 4_000_000, parts: bool = False,
                      general: bool = False) -> np.ndarray:
    """The gradient of the model's criterion at its current theta (L up to date); with
    ``parts``, its two pieces (d log-determinants, d pwrss) instead.  ``general`` forces
    route (1)-(2) where (4)-(5) apply (for tests)."""
    L = model.L
    key = (L, model.REML, general)
    cached = getattr(model, "_gradient_cache", None)
    if cached is not None and cached[0] == key:  # the same factor: the same gradient
        g_logdet, g_pwrss = (x.copy() for x in cached[1])
        scale = (model.n - model.p if model.REML else model.n) / L.pwrss
        return (g_logdet, g_pwrss) if parts else g_logdet + scale * g_pwrss
    templates = theta_templates(model.theta, model.ks)
    u, beta = L.solve_u_beta()
    g_pwrss = _pwrss_gradient(model, templates, u, beta)
    if model.q_tail and not general:
        g_logdet = _lead_logdet_gradient(model, templates)
    else:
        g_logdet = _general_logdet_gradient(model, templates, chunk_entries)
    model._gradient_cache = (key, (g_logdet.copy(), g_pwrss.copy()))
    scale = (model.n - model.p if model.REML else model.n) / L.pwrss
    return (g_logdet, g_pwrss) if parts else g_logdet + scale * g_pwrss
