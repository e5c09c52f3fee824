r"""The analytic gradient of the Laplace deviance over (theta, beta), for canonical links.

With A = Z Lambda_theta, eta = offset + X beta + A u, the modes u* of the penalised deviance
(PIRLS, :mod:`lmmpy.fit.pirls`) and H = A'WA + I = L L' (W the working weights at eta*),

    D(theta, beta) = -2 log p(y | eta*) + ||u*||^2 + log|H|.

Let g_i = d(-2 log p_i)/d eta_i = -2 w_i (y_i - mu_i) mu_eta_i / V(mu_i).  For a canonical link
(binomial logit, Poisson log) dg_i/d eta_i = 2 W_i, so the mode equation A'g/2 + u = 0 has the
Jacobian H in u, and for any parameter phi:

- the first two terms (stationary in u at u*, the envelope theorem): g' (d eta/d phi at fixed u),
  with d eta/d beta_j = X_j and d eta/d theta_m = (dA_m) u*, dA_m = Z dLambda/d theta_m;
- log|H| at fixed W: for theta, the weighted linear mixed model's d log|L|^2 (its analytic
  gradient, :func:`lmmpy.fit.gradient.criterion_gradient_parts`, on the factor at W);
- log|H| through W: sum_i c_i d eta*_i / d phi with c_i = (dW_i/d eta_i) h_i,
  h = diag(A H^{-1} A').  Differentiating the mode equation,
  H du*/d phi = -[(dA_phi)' g / 2 + A'W (d eta/d phi at fixed u)], so with v = H^{-1} A'c
  (one solve) this term is (c - W A v)' (d eta/d phi at fixed u) - (g/2)' (dA_phi) v.

Together, r = g + c - W A v and

    dD/d beta = X' r,
    dD/d theta_m = r' (dA_m u*) - (g/2)' (dA_m v) + d log|L|^2/d theta_m (fixed W).

h comes from the blocked factor L = [L_11 0; L_t1 L_tt].  Where L_t1 is small enough to be
dense (``DENSE_LT1_ENTRIES``), from the entries of H^{-1} that rows meet: with
C = L_tt^{-1} L_t1, the level blocks of H^{-1}'s first part L_11j^{-T} (I + C_j' C_j) L_11j^{-1},
its tail-first part -L_tt^{-T} C L_11^{-1} and its tail part L_tt^{-T} L_tt^{-1}, and
h_i = a_i' H^{-1} a_i summed over the pairs of row i's entries (a few per row: work
O(n (sum k)^2), the inverse's parts O(q_tail^2 q_1)).  Otherwise row by row: for row i with
level j of the first term, s_1 = L_11j^{-1} a_i1 and s_t = L_tt^{-1} (a_it - L_t1 [.., j] s_1),
h_i = |s_1|^2 + |s_t|^2 (a dense n x q_tail work array: models beyond ``MAX_TAIL_ENTRIES`` keep
central differences).
The variance function's slope V'(mu) gives dW/d eta = w V'(mu) mu_eta (W = w V(mu) for a
canonical link).  The binomial's aic is differentiated as its deviance, which holds when the
successes m y are whole numbers (R's aic rounds them): other data keep central differences.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..formula.theta_layout import theta_templates, tril_positions
from .gradient import criterion_gradient_parts
from .pirls import aic_is_deviance_plus_constant

# V'(mu) of the canonical links' families (with them dg/d eta = 2 W, the premise above)
VARIANCE_SLOPE = {
    ("binomial", "logit"): lambda mu: 1.0 - 2.0 * mu,
    ("poisson", "log"): lambda mu: np.ones_like(mu),
}
MAX_TAIL_ENTRIES = 20_000_000  # n x q_tail doubles of the h_i work array (160 MB)
DENSE_LT1_ENTRIES = 4_000_000  # L_t1 (q_tail x q_1) made dense (the leverages by the inverse) up to this size


def supports_analytic_gradient(model) -> bool:
    """Whether :func:`laplace_gradient` applies: Laplace (nAGQ = 1), a canonical link, whole
    binomial successes, and a tail small enough for the n x q_tail work array."""
    family = model.family
    if model.nAGQ != 1 or (family.family, family.link_name) not in VARIANCE_SLOPE:
        return False
    if model.n * model.q_tail > MAX_TAIL_ENTRIES:
        return False
    # the aic differentiated as the deviance (the mode equation's)
    return aic_is_deviance_plus_constant(family, model.y, model.trials, model.wt)


def _forward_solve(L, rhs: np.ndarray, q1: int, k1: int, L11_inv: np.ndarray) -> np.ndarray:
    """L_Z^{-1} rhs for the random-effects part of the blocked factor (rhs: a q-vector)."""
    y1 = np.einsum("lij,lj->li", L11_inv, rhs[:q1].reshape(-1, k1)).ravel()
    if not L.q_tail:
        return y1
    qt = L.q_tail
    yt = sla.solve_triangular(L.Ltt[:qt, :qt], rhs[q1:] - L.Lt1_z @ y1, lower=True, check_finite=False)
    return np.concatenate([y1, yt])


def _tail_columns(model) -> list:
    """Per tail term and column: (the term's rows' entry index into the tail, the term's
    index in ``rows_A``, the column)."""
    out, start = [], 0
    for index, t in enumerate(model.terms[1:], start=1):
        for c in range(t.k):
            out.append((start + t.codes * t.k + c, index, c))
        start += t.q
    return out


def _leverages_by_inverse(model, L, rows_A, L11_inv) -> np.ndarray:
    """h = diag(A H^{-1} A') from the parts of H^{-1} that rows meet (module docstring)."""
    first = model.terms[0]
    l1, k1, qt = first.nlevels, first.k, model.q_tail
    Ltt = L.Ltt[:qt, :qt]
    C = sla.solve_triangular(Ltt, L.Lt1_z.toarray(), lower=True, check_finite=False)  # q_tail x q1
    E = sla.solve_triangular(Ltt, C, lower=True, trans="T", check_finite=False)  # L_tt^{-T} C
    D = sla.solve_triangular(Ltt, np.eye(qt), lower=True, check_finite=False)  # L_tt^{-1}
    C3 = C.reshape(qt, l1, k1)
    inner = np.einsum("tla,tlb->lab", C3, C3) + np.eye(k1)  # I + C_j' C_j
    P11 = np.einsum("lca,lcd,ldb->lab", L11_inv, inner, L11_inv)
    Pt1 = -np.einsum("tla,lab->tlb", E.reshape(qt, l1, k1), L11_inv).reshape(qt, l1 * k1)
    Ptt = D.T @ D
    a1 = rows_A[0]
    h = np.einsum("na,nab,nb->n", a1, P11[first.codes], a1)
    columns = _tail_columns(model)
    first_index = [first.codes * k1 + d for d in range(k1)]
    for pos, (g, t, c) in enumerate(columns):
        a = rows_A[t][:, c]
        cross = sum(a1[:, d] * Pt1[g, f] for d, f in enumerate(first_index))
        h += 2.0 * a * cross
        h += a * a * Ptt[g, g]
        for g2, t2, c2 in columns[pos + 1 :]:
            h += 2.0 * a * rows_A[t2][:, c2] * Ptt[g, g2]
    return h


def _leverages(model, L, rows_A, L11_inv) -> np.ndarray:
    """h = diag(A H^{-1} A') from the blocked factor (module docstring)."""
    n = model.n
    first = model.terms[0]
    k1 = first.k
    qt = model.q_tail
    if qt and qt * first.q <= DENSE_LT1_ENTRIES:
        return _leverages_by_inverse(model, L, rows_A, L11_inv)
    s1 = np.einsum("nij,nj->ni", L11_inv[first.codes], rows_A[0])
    h = np.einsum("ni,ni->n", s1, s1)
    if not qt:
        return h
    # R = -L_t1[:, j] s_1 per row (n x q_tail), one sparse product
    S1 = sp.csr_matrix(
        (s1.ravel(), (first.codes[:, None] * k1 + np.arange(k1)).ravel(), np.arange(0, n * k1 + 1, k1)),
        shape=(n, first.q),
    )
    R = -np.asarray((S1 @ L.Lt1_z.T).toarray())
    start, every = 0, np.arange(n)[:, None]
    for t, a in zip(model.terms[1:], rows_A[1:]):
        R[every, start + t.codes[:, None] * t.k + np.arange(t.k)] += a  # one entry per column of a term
        start += t.q
    St = sla.solve_triangular(L.Ltt[:qt, :qt], R.T, lower=True, check_finite=False)
    return h + np.einsum("tn,tn->n", St, St)


def laplace_gradient(model, res, theta) -> np.ndarray:
    """dD/d(theta, beta) at the PIRLS result ``res`` (modes, weights and factor at theta and
    ``res.beta``) of ``model`` (:class:`lmmpy.fit.pirls.GlmmModel`); see the module docstring."""
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    fam, terms = model.family, model.terms
    templates = theta_templates(theta, model.ks)
    L, mu, eta, W = res.factor, res.mu, res.eta, res.weights
    mu_eta = fam.mu_eta(eta)
    g = -2.0 * model.wt * (model.y - mu) * mu_eta / fam.variance(mu)
    dW = model.wt * VARIANCE_SLOPE[(fam.family, fam.link_name)](mu) * mu_eta
    rows_A = [t.X @ T for t, T in zip(terms, templates)]  # row i's entries of A, per term: (n, k)
    first = terms[0]
    L11_inv = L.L11.inverse().blocks
    c = dW * _leverages(model, L, rows_A, L11_inv)
    # v = H^{-1} A'c
    Atc = np.concatenate(
        [
            np.column_stack(
                [np.bincount(t.codes, weights=a[:, j] * c, minlength=t.nlevels) for j in range(t.k)]
            ).ravel()
            for t, a in zip(terms, rows_A)
        ]
    )
    v = L.solve_LZt(_forward_solve(L, Atc, first.q, first.k, L11_inv)[:, None])[:, 0]
    r = g + c - W * model.zlambda_u(v, templates)
    grad_theta: list[float] = []
    pos = 0
    for t in terms:
        U = res.u[pos : pos + t.q].reshape(t.nlevels, t.k)
        V = v[pos : pos + t.q].reshape(t.nlevels, t.k)
        P = t.X.T @ (r[:, None] * U[t.codes] - 0.5 * g[:, None] * V[t.codes])  # P[a, b]: d/d T[a, b]
        grad_theta.extend(P[a, b] for a, b in tril_positions(t.k))
        pos += t.q
    logdet, _ = criterion_gradient_parts(model.pls.model, L, theta)
    return np.concatenate([np.asarray(grad_theta) + logdet, model.X.T @ r])
