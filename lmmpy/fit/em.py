r"""The EM algorithm for linear mixed models, ML and REML, for any number of terms.

The random effects b = Lambda u are the missing data.  At the current theta (sigma^2 at its
profiled value for that theta) the blocked factor L gives the E-step:

    u_hat, beta_hat         the penalised least-squares solution
    Var(u | y)  = sigma^2 C  with C = (L_Z L_Z')^{-1}             (ML, beta fixed at beta_hat)
                             or C = (L_Z L_Z')^{-1} + G'G           (REML, beta integrated out)

and only C's k x k diagonal blocks (one per level) are needed.  The M-step is the
Laird-Ware / Lindstrom-Bates update, term by term and level by level:

    Sigma_i  <- (1 / l_i) sum_j [ b_ij b_ij' + sigma^2 T_i C_ij T_i' ]
    sigma^2  <- ( ||y - X beta - Z b||^2 + sigma^2 (q [+ p] - tr C) ) / n

(the bracket for REML), since tr(Lambda'Z'Z Lambda (L L')^{-1}) = q - tr((L L')^{-1}) and
likewise with X for REML.  The new theta is T_i = chol(Sigma_i / sigma^2).  Nothing of size
n_j x n_j is ever inverted: the q_j x q_j blocks of the factor serve.  Each step cannot lower
the likelihood; convergence is declared on the relative change of the criterion.

Plain EM crawls when a variance is on its boundary (a singular fit: thousands of steps).
``accelerate=True`` (the default) wraps the EM map F in SQUAREM (Varadhan & Roland 2008,
scheme S3): from theta_0, r = F(theta_0) - theta_0, v = F(F(theta_0)) - F(theta_0) - r,
alpha = -||r|| / ||v|| (at most -1), theta' = theta_0 - 2 alpha r + alpha^2 v projected onto the
bounds, then one more EM step from theta'; whenever that would raise the criterion above
the two plain EM steps' it falls back to them, so the criterion never rises.

EM can only approach a zero variance like 1/k: its update never sets a diagonal of T to
zero.  So once progress stalls (relative change below 1e-7) the diagonal thetas below
``snap`` are tried at exactly zero, and kept there when that does not raise the criterion;
trying earlier can strand EM on a boundary that is not the optimum, which it cannot leave.
"""

from __future__ import annotations

import time

import numpy as np

from ..formula.theta_layout import theta_from_templates, theta_templates  # noqa: F401 (re-exported)
from .deviance import LmmModel
from .gradient import cond_cov_sums
from .optimize import OptSummary


def psd_lower_factor(S: np.ndarray) -> np.ndarray:
    """A lower-triangular T with T T' = S for a symmetric positive semi-definite S (a
    Cholesky factor that tolerates singular S, as EM meets at the boundary)."""
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh((S + S.T) / 2)
        A = vecs * np.sqrt(np.clip(vals, 0.0, None))  # A A' = S
        R = np.asarray(np.linalg.qr(A.T, mode="r"))  # A' = Q R  =>  S = R'R
        R = R * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))[:, None]
        return R.T


def squarem_point(x0, x1, x2) -> np.ndarray:
    """SQUAREM's (scheme S3) extrapolation from x0 and two map steps x1 = F(x0), x2 = F(x1):
    x0 - 2 a r + a^2 v with r = x1 - x0, v = x2 - 2 x1 + x0, a = min(-1, -|r| / |v|)."""
    r, v = x1 - x0, x2 - 2 * x1 + x0
    nv = np.linalg.norm(v)
    alpha = min(-1.0, -np.linalg.norm(r) / nv) if nv > 0 else -1.0
    return x0 - 2 * alpha * r + alpha**2 * v


def em_step(model: LmmModel) -> np.ndarray:
    """One EM update from the model's current theta (with L up to date); returns the new theta."""
    L, n, p = model.L, model.n, model.p
    assert L is not None, "em_step needs the factor at the model's theta"
    sigma2 = L.pwrss / (n - p if model.REML else n)
    templates = theta_templates(model.theta, model.ks)
    u, _ = L.solve_u_beta()
    theta, _, _ = em_m_step(model, L, u, templates, cond_cov_sums(model), sigma2)
    return theta


def em_m_step(model: LmmModel, L, u, templates, sums, sigma2: float):
    """The M-step (Laird & Ware 1982; mixedML's Table 1) from the E-step's pieces at theta:
    L the factor, u the spherical random effects, ``sums`` the per-term sums of the conditional
    covariance blocks C (:func:`lmmpy.fit.gradient.cond_cov_sums`), sigma2 the current residual
    variance.  With b = Lambda u, q random effects and rss = pwrss - |u|^2,

        sigma2' = (rss + sigma2 (q [+ p for REML] - tr C)) / n
        Sigma_i' = (b_i'b_i + sigma2 T_i C_i T_i') / l_i,   T_i' = chol(Sigma_i' / sigma2')

    Returns (theta', sigma2', the terms' b as (l, k) arrays)."""
    n, p = model.n, model.p
    tr_c = sum(float(np.trace(C)) for C in sums)
    q = u.size
    rss = L.pwrss - float(u @ u)  # ||y - X beta - Z b||^2 (weighted)
    sigma2_new = (rss + sigma2 * (q + (p if model.REML else 0) - tr_c)) / n
    new_templates, b_terms, pos = [], [], 0
    for (l, k), T, C in zip(model.sizes, templates, sums):
        b = u[pos : pos + l * k].reshape(l, k) @ T.T
        pos += l * k
        b_terms.append(b)
        S = (b.T @ b + sigma2 * T @ C @ T.T) / l
        new_templates.append(psd_lower_factor(S / sigma2_new))
    return np.maximum(theta_from_templates(new_templates), model.lower), float(sigma2_new), b_terms


def _em_map(model: LmmModel, theta):
    """(criterion at theta, F(theta))."""
    f = model(theta)
    return f, (em_step(model) if np.isfinite(f) else theta)


def _snap_to_boundary(model: LmmModel, theta, f, snap):
    """Zero the small diagonal thetas if that does not raise the criterion."""
    small = (model.lower == 0) & (theta > 0) & (theta < snap)
    if not small.any():
        return theta, f
    trial = np.where(small, 0.0, theta)
    ft = model(trial)
    return (trial, ft) if ft <= f else (theta, f)


def fit_em(
    model: LmmModel, theta0=None, max_iter: int = 10000, tol: float = 1e-10, accelerate: bool = True, snap: float = 1e-3
) -> OptSummary:
    """Run EM from ``theta0`` until the criterion's relative change is below ``tol``;
    ``max_iter`` bounds the number of EM steps (F evaluations).

    Leaves the model at the best theta; the OptSummary records the criterion trace."""
    theta = model.theta_start() if theta0 is None else np.atleast_1d(np.asarray(theta0, float))
    opt = OptSummary(optimizer="em" + ("+squarem" if accelerate else ""), theta0=theta.copy(), lower=model.lower.copy())
    t0 = time.perf_counter()
    f, F = _em_map(model, theta)
    trace, steps, converged = [f], 0, False
    while steps < max_iter and np.isfinite(f):
        if accelerate:
            f1, F1 = _em_map(model, F)
            candidate = np.maximum(squarem_point(theta, F, F1), model.lower)
            fc, Fc = _em_map(model, candidate)
            steps += 3
            if np.isfinite(fc) and fc <= f1:
                new_theta, f_new, F_new = candidate, fc, Fc
            else:  # extrapolation overshot: keep the plain EM steps
                new_theta, f_new, F_new = F, f1, F1
        else:
            new_theta = F
            f_new, F_new = _em_map(model, F)
            steps += 1
        stalled = abs(f - f_new) <= 1e-7 * max(1.0, abs(f_new))
        snapped, f_snap = _snap_to_boundary(model, new_theta, f_new, snap) if stalled else (new_theta, f_new)
        if snapped is not new_theta:
            new_theta, f_new = snapped, f_snap
            F_new = em_step(model.set_theta(new_theta).update())
        trace.append(f_new)
        done = abs(f - f_new) <= tol * max(1.0, abs(f_new))
        theta, f, F = new_theta, f_new, F_new
        if done:
            converged = True
            break
    opt.seconds = time.perf_counter() - t0
    opt.theta, opt.fmin = theta, float(model(theta))
    opt.n_evals = steps
    opt.trace = trace
    opt.converged = converged and np.isfinite(opt.fmin)
    opt.message = (
        f"EM converged in {steps} steps" if opt.converged else f"EM stopped after {steps} steps without converging"
    )
    return opt
