r"""The analytic gradient of the profiled criteria in theta.

The criteria's gradients have two parts.  With r the weighted residual at the penalised
least-squares solution (beta, u) and dE = d Lambda / d theta_k (nonzero only in its term's
blocks: I_l (x) E_ab for the template entry (a, b)),

    d pwrss = -2 r'WZ dE u                                              (3, envelope theorem)

and ML: d = d log|L|^2 + n (3)/pwrss; REML: d = d(log|L|^2 + log|R_X|^2) + (n - p) (3)/pwrss.

The log-determinants both at once, through the lead
M = [Lambda'Z'Z Lambda + I, Lambda'Z'X; X'Z Lambda, X'X] (REML; Omega alone for ML), whose
inverse's tail block K' = (L_lead L_lead')^{-1} is one LAPACK dpotri (for a model with one
term the lead is X alone, or empty).  With T_1 the first
term's template, A_11j its cross-product block for level j, O_j = T_1'A_11j T_1 + I,
V_j = T_1 O_j^{-1} T_1', A_t1j the tail's cross-products with level j and C = Lambda_t K' Lambda_t',

    d/dT_1[a,b] = 2 sum_j X_j[b, a],
        X_j = O_j^{-1} T_1' A_11j + O_j^{-1} T_1' Q_j (V_j A_11j - I),  Q_j = A_t1j' C A_t1j   (4)
    d/dT_ab     = 2 sum_j (K' Lambda_t' A~)_jj[b, a]    over the levels j of a tail term   (5)

with A~ = A_tt - A_t1 blockdiag(V) A_t1' the tail's Schur complement before Lambda_t (Q and
A~ on A_t1's fixed pattern of pairs, :class:`lmmpy.linalg.gram.WeightedGram`).  (4) and (5) are
the diagonal blocks of M^{-1} D A (D = diag(Lambda, I), A = [Z X]'[Z X]) worked out with the
blocked inverse; they need no products of K' with sparse matrices.  For a scalar first term
(4) is 2 t (sum_j a_j w_j^2 - sum_j w_j^4 Q_j) with w_j = 1 / L_11[j].  No Lambda^{-1}
appears, so the gradient is exact on the boundary too.  (The tests check this route against
central differences and against the older route through Omega^{-1} P, tests/gradient_oracle.py.)
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from ..linalg.blocked import BlockedCholesky, mirror_lower
from ..formula.theta_layout import theta_templates, tril_positions

# the functions take the model (lmmpy.fit.deviance.LmmModel, which calls them from its gradient
# method) by its public interface; the annotations name it without importing it


def _template_grad(D, T_shape):
    """sum_j D_j[b, a] for each lower-triangle (a, b), in lme4's theta order."""
    Dsum = D.sum(axis=0)
    return [Dsum[b, a] for a, b in tril_positions(T_shape)]


def _pwrss_gradient(model, templates, u, beta) -> np.ndarray:
    """(3): d pwrss / d theta = -2 (Z'W r)' dLambda u, with Z'W r from the stored cross-products
    (r = y - X beta - Z Lambda u)."""
    p, q_t = model.p, model.q_tail
    (l1, k1) = model.sizes[0]
    b = np.concatenate(
        [
            (u[s : s + l * k].reshape(l, k) @ T.T).ravel()  # b = Lambda u, term by term
            for (l, k), T, s in zip(model.sizes, templates, _starts(model.sizes))
        ]
    )
    b1, bt = b[: l1 * k1], b[l1 * k1 :]
    A11, At1 = model.A11, model.At1_z
    zr = model.At1_xy[-1] - model.At1_xy[:p].T @ beta - np.einsum("jcd,jd->jc", A11, b1.reshape(l1, k1)).ravel()
    if q_t:
        zrt = model.Att[:q_t, -1] - model.Att[:q_t, q_t : q_t + p] @ beta - At1 @ b1 - model.Att_zz @ bt
        zr = np.concatenate([zr - At1.T @ bt, zrt])
    out: list[np.ndarray] = []
    for (l, k), s in zip(model.sizes, _starts(model.sizes)):
        dr2 = -2.0 * zr[s : s + l * k].reshape(l, k).T @ u[s : s + l * k].reshape(l, k)  # d pwrss / d T[a, b]
        out.extend(dr2[a, b] for a, b in tril_positions(k))
    return np.array(out)


def _starts(sizes):
    return np.concatenate([[0], np.cumsum([l * k for l, k in sizes])[:-1]]).astype(int)


def _lead_inverse(model, L: BlockedCholesky, m: int, full: bool = True) -> np.ndarray:
    """K' = (L_lead L_lead')^{-1} for the leading m rows of the tail block: symmetric, or
    (not ``full``) its lower triangle with zeros above."""
    if m == 0:
        return np.zeros((0, 0))
    U = model.work_buffer("lead", (m, m), order="F")
    np.copyto(U, L.Ltt[:m, :m].T)  # upper triangular, Fortran order
    Ki, info = lapack.dpotri(U, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError("cannot invert the tail block")
    K = Ki.T  # lower triangle in C order; the rest is 0
    return mirror_lower(K) if full else K


def _lead_parts(model, L: BlockedCholesky, templates) -> dict:
    """What the lead route needs: K' (lower triangle, or symmetric for vector-valued tail terms),
    C = Lambda_t K' Lambda_t' (lower triangle), Q_j = A_t1j' C A_t1j, O_j^{-1}, V and the gram's
    values at V (see the module docstring)."""
    q, p = model.q_tail, model.p
    m = q + (p if model.REML else 0)
    (l1, k1) = model.sizes[0]
    T1 = templates[0]
    W = L.L11.inverse().blocks
    O_inv = np.einsum("lji,ljk->lik", W, W)  # Omega_11j^{-1}
    V = np.einsum("ij,ljk,mk->lim", T1, O_inv, T1)  # T1 Omega_11j^{-1} T1'
    if k1 == 1:
        V = V.reshape(l1)
    values = model.schur_values(T1, V) if q else None
    lam = model.tail_lambda(templates) if q else np.ones(m)  # no tail: the lead is X (or empty)
    K = _lead_inverse(model, L, m, full=lam is None)
    C = model.work_buffer("C", (m, m))
    if lam is not None:  # Lambda_t is diagonal: C = Lambda_t K' Lambda_t' on the lower triangle only
        np.multiply(K, lam[:m, None], out=C)
        C *= lam[None, :m]
    else:
        np.copyto(C, K)
        model.lambda_t_sandwich(C, templates, transpose=True)
    # Q_j over the lead: the random effects, and X for REML
    Q = model.gram.level_products(C).reshape(l1, k1, k1) if q else np.zeros((l1, k1, k1))
    if m > q:
        Ax = model.At1_xy[:p].reshape(p, l1, k1)
        G = np.asarray(model.At1_z.T @ C[q:m, :q].T).T.reshape(p, l1, k1)  # C_xz A_z
        Cxx = np.tril(C[q:m, q:m])
        Cxx = Cxx + np.tril(Cxx, -1).T
        cross = np.einsum("plc,pld->lcd", Ax, G)
        Q += cross + np.swapaxes(cross, 1, 2) + np.einsum("plc,pr,rld->lcd", Ax, Cxx, Ax)
    return dict(m=m, K=K, C=C, Q=Q, O_inv=O_inv, V=V, values=values, lam=lam)


def cond_cov_sums(model, L: BlockedCholesky | None = None, theta=None) -> list:
    """Per term, the sum over its levels of the k x k diagonal blocks of u's conditional
    covariance over sigma^2: of (L_theta L_theta')^{-1} (ML) or of M^{-1}'s random-effects part
    (REML, beta integrated out), what the EM algorithm needs, from the lead's inverse: O_j^{-1} + O_j^{-1} T1' Q_j T1 O_j^{-1} for the
    first term (the blocked inverse), K's diagonal blocks for the others.  At L (the factor at
    theta), or at the model's working point."""
    if L is None:  # the working point
        L, theta = model.L, model.theta
    templates = theta_templates(theta, model.ks)
    parts = _lead_parts(model, L, templates)
    T1, O_inv, K = templates[0], parts["O_inv"], parts["K"]
    OT = np.einsum("lij,kj->lik", O_inv, T1)  # O_j^{-1} T1'
    sums = [(O_inv + np.einsum("lij,ljk,lmk->lim", OT, parts["Q"], OT)).sum(axis=0)]
    start = 0
    for l, k in model.sizes[1:]:
        first = start + np.arange(l) * k
        sums.append(np.array([[K[first + c, first + d].sum() for d in range(k)] for c in range(k)]))
        start += l * k
    return sums


def _lead_logdet_gradient(model, L: BlockedCholesky, templates) -> np.ndarray:
    """d(log|L|^2 [+ log|R_X|^2]) by (4) and (5) of the module docstring."""
    (l1, k1) = model.sizes[0]
    T1, A11 = templates[0], model.A11
    parts = _lead_parts(model, L, templates)
    m, K, C, Q, O_inv, V, values, lam = (parts[x] for x in ("m", "K", "C", "Q", "O_inv", "V", "values", "lam"))
    scalar = lam is not None
    # (4): X_j = O_j^{-1} T1' A_11j + O_j^{-1} T1' Q_j (V_j A_11j - I)
    OT = np.einsum("lij,kj->lik", O_inv, T1)  # O_j^{-1} T1'
    VA = np.einsum("lij,ljk->lik", V.reshape(l1, k1, k1), A11) - np.eye(k1)
    X = np.einsum("lij,ljk->lik", OT, A11) + np.einsum("lij,ljk,lkm->lim", OT, Q, VA)
    grads = [2.0 * g for g in _template_grad(X, k1)]
    # (5): the diagonal blocks of K' Lambda_t' A~ over each tail term
    if not model.q_tail:
        return np.array(grads)
    if scalar:  # diag(K' diag(lam) A~) from lower triangles: sum_m K[i,m] lam_m A~[m,i]
        lam = lam[:m]
        P = model.weighted_tail_schur(V, K, values, out=C)
        # (einsum, not BLAS gemv: a threaded gemv here slows the next LAPACK call twofold)
        D_all = np.einsum("ij,j->i", P, lam) + np.einsum("ij,i->j", P, lam) - np.diagonal(P) * lam
    else:  # (K' Lambda_t' A~)[i, j] = sum_m K'[i, m] (A~ Lambda_t)[j, m]: rows with rows
        N = model.Att.shape[0]
        At = model.tail_schur(V, full=True, out=model.work_buffer("schur", (N, N)), values=values)[:m, :m]
        Yt = model.lambda_t_cols(At, templates)
    start = 0
    for l, k in model.sizes[1:]:
        seg = slice(start, start + l * k)
        if scalar:
            D = D_all[seg].reshape(l, 1, 1)
        else:
            D = np.einsum("lcm,ldm->lcd", K[seg].reshape(l, k, m), Yt[seg].reshape(l, k, m))
        grads.extend(2.0 * g for g in _template_grad(D, k))
        start += l * k
    return np.array(grads)


def criterion_gradient_parts(model, L: BlockedCholesky, theta):
    """(d log-determinants, d pwrss) at theta, L the factor there (the model's work buffers
    for the lead's inverse; the model caches the result, :meth:`LmmModel.gradient`)."""
    templates = theta_templates(theta, model.ks)
    u, beta = L.solve_u_beta()
    g_pwrss = _pwrss_gradient(model, templates, u, beta)
    return _lead_logdet_gradient(model, L, templates), g_pwrss


def profiled_gradient(model, parts: bool = False) -> np.ndarray:
    """The gradient of the model's criterion at its working point; with ``parts``, its two
    pieces (d log-determinants, d pwrss) instead (:meth:`LmmModel.gradient`)."""
    return model.gradient(parts=parts)


def value_and_gradient(model):
    """theta -> (criterion, analytic gradient) of ``model`` (an LmmModel), for the gradient
    optimizers and the checks: through the dense factor for a small model
    (:attr:`LmmModel.dense`), else the blocked one; (inf, zeros) where the criterion is not finite."""
    if model.dense is not None:
        return model.dense.value_and_gradient

    def fg(theta):
        f = model(theta)
        if not np.isfinite(f):
            return np.inf, np.zeros_like(theta)
        return f, profiled_gradient(model)

    return fg
