r"""The Laplace (and adaptive Gauss-Hermite) deviance of a generalized linear mixed model, with
the conditional modes found by penalised iteratively reweighted least squares (PIRLS).

For the spherical random effects u (b = Lambda_theta u, u ~ N(0, I)), eta = offset + X beta +
Z Lambda u and mu = g^{-1}(eta), the conditional modes maximise the penalised log-likelihood,
that is minimise the penalised deviance

    pdev(u) = sum_i d_i(y_i, mu_i) + ||u||^2        (d_i the family's deviance residuals).

PIRLS: at the current eta, with working weights W = w mu_eta^2 / V(mu) and the working
response z = eta - offset + (y - mu) / mu_eta, the Newton step is the penalised weighted least
squares problem min ||W^{1/2} (z - X beta - Z Lambda u)||^2 + ||u||^2, which is a linear mixed
model's: it is solved on lmmpy's blocked factor (:mod:`lmmpy.linalg.blocked`) of
Lambda' Z' W Z Lambda + I, the cross-products made from the rows with the new weights
(:meth:`CrossProducts.from_rows`; no dense n x n, no loop over levels).  With beta fixed
(nAGQ >= 1) X is left out and X beta joins the offset; with nAGQ = 0 beta is updated with u.
A step that raises pdev is halved (up to ten times).

At the modes u*, with L the factor at the converged weights, lme4's Laplace deviance is

    D(theta, beta) = aic(y, n, mu, w) + ||u*||^2 + log|L|^2

(``aic`` the family's -2 log-likelihood of y given the random effects, R's ``family$aic``).
Adaptive Gauss-Hermite quadrature (a single scalar random-effects term) replaces each group's
log|L_j|^2 + pdev_j by the quadrature -2 log integral, at nodes u*_j + z_k / L_jj:

    D = sum_j [ pdev_j(u*_j) - 2 log( (1 / L_jj) sum_k w_k exp(-(pdev_j(u*_j + z_k / L_jj) - pdev_j(u*_j)) / 2 + z_k^2 / 2) ) ]

(z_k, w_k the Gauss-Hermite rule for the standard normal).  As lme4 reports it, this leaves out
aic - sum_i d_i, the saturated model's -2 log-likelihood (a constant for binomial and Poisson),
which the Laplace deviance includes: with nAGQ = 1 the formula would be D_Laplace - aic + sum d_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError, LmmError
from ..families import Family, binomial_dev_binary
from ..formula.design import Design
from ..formula.theta_layout import theta_templates
from .reweighted import ReweightedLmm

PIRLS_MAX_HALVINGS = 10
# R's canonical links: PIRLS (Fisher scoring) is Newton's method there and converges
# quadratically; with any other link it converges linearly
CANONICAL_LINKS = {("binomial", "logit"), ("poisson", "log"), ("Gamma", "inverse"), ("inverse.gaussian", "1/mu^2")}
# with a linearly converging PIRLS, a small change of the penalised deviance (quadratic in the
# modes' error at the mode) leaves the modes off by ~sqrt of it, and the Laplace deviance,
# whose log|L|^2 is not stationary in u, then depends on the warm start (~1e-6 for cbpp's
# cloglog: noise that central differences magnify into a false gradient); PIRLS goes on until
# its largest step is below this (relative to 1 + |u|)
LINEAR_PIRLS_STEP_TOL = 1e-10


START_FACTORS_MAX_ENTRIES = 5_000_000  # numbers in lme4_deviance's kept start factors (40 MB)


@dataclass
class _StartProblem:
    """lme4_deviance's penalised least-squares problem at the weights of its start eta (valid:
    eta is in the family's range) and its factors by theta (bytes)."""

    eta: np.ndarray
    pls: ReweightedLmm
    valid: bool
    factors: dict


class PirlsError(LmmError):
    """PIRLS could not find the conditional modes (no finite step)."""


@dataclass
class PirlsResult:
    """The conditional modes at (theta, beta) and the deviance there."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    weights: np.ndarray  # the working weights at mu
    factor: object  # the blocked factor of Lambda'Z'WZLambda + I (with X: R_X too)
    deviance: float  # Laplace or AGQ
    dev_resid_sum: float
    iterations: int


def check_response(family: Family, y: np.ndarray, trials) -> None:
    """The response's range as R's families check it (``family$initialize``)."""
    name = family.family
    if name == "binomial":
        if np.any(y < 0) or np.any(y > 1):
            raise DataError("the binomial response must be 0/1, a proportion in [0, 1], a two-level factor or cbind()")
        if trials is None and np.any((y > 0) & (y < 1)):
            pass  # a proportion: its trials come as weights (non-integer counts are R's warning, below)
    elif name == "poisson":
        if np.any(y < 0):
            raise DataError("negative values are not allowed for the 'Poisson' family")
    elif name in ("Gamma", "inverse.gaussian"):
        if np.any(y <= 0):
            raise DataError(f"positive values only are allowed for the '{name}' family")


def aic_is_deviance_plus_constant(family: Family, y, trials, wt) -> bool:
    """Whether the family's aic(mu) - sum d_i(mu) is a constant in mu (the saturated model's
    -2 log-likelihood): Poisson, and the binomial when its successes m y are whole numbers
    (R's aic rounds them; m = n if any n > 1, else the weights)."""
    if family.family == "poisson":
        return True
    if family.family != "binomial":
        return False  # the dispersion families' aic has the deviance in it
    m = trials if np.any(trials > 1) else wt
    successes = m * y
    return bool(np.allclose(successes, np.round(successes), rtol=0.0, atol=1e-9))


class GlmmModel:
    """A generalized linear mixed model's fixed parts and its deviance as a function of
    (theta, beta); the last conditional modes are kept to start the next PIRLS from.

    ``y`` is the response R's family sees (binomial: the proportion), ``wt`` the prior weights
    (binomial with cbind: times the trials), ``n`` the trials (R's ``n``, used by the binomial
    aic)."""

    def __init__(self, design: Design, family: Family, nAGQ: int = 1, pirls_tol: float = 1e-10, pirls_max_iter=100):
        self.design = design
        self.family = family
        self.nAGQ = int(nAGQ)
        self.tol, self.max_iter = float(pirls_tol), int(pirls_max_iter)
        self.step_tol = None if (family.family, family.link_name) in CANONICAL_LINKS else LINEAR_PIRLS_STEP_TOL
        n = design.n
        self.n, self.p = n, design.p
        self.y = design.y
        prior = design.weights if design.weights is not None else np.ones(n)
        check_response(family, self.y, design.trials)
        if design.trials is not None:
            self.wt, self.trials = prior * design.trials, design.trials
        else:
            self.wt, self.trials = prior, np.ones(n)
        self.prior_weights = prior
        self.offset = design.offset if design.offset is not None else np.zeros(n)
        self.X = design.X
        self.terms = design.reterms
        self.Zs = [t.Z() for t in self.terms]
        self._term_columns = [np.ascontiguousarray(t.X.T) for t in self.terms]  # for zlambda_u
        self.sizes = [(t.nlevels, t.k) for t in self.terms]
        self.ks = [t.k for t in self.terms]
        self.q = sum(t.q for t in self.terms)
        self.lower = design.theta_lower()
        self.q_tail = sum(t.q for t in self.terms[1:])
        self.pls = ReweightedLmm(self.terms, self.Zs, self.X, self.lower)
        if self.nAGQ > 1 and not (len(self.terms) == 1 and self.terms[0].k == 1):
            raise LmmError(
                "nAGQ > 1 is only available for models with a single, scalar random-effects term "
                f"(this model has {len(self.terms)} term(s) with {', '.join(str(k) for k in self.ks)} column(s))"
            )
        if self.nAGQ > 1:
            z, w = np.polynomial.hermite_e.hermegauss(self.nAGQ)
            self.gh_nodes, self.gh_weights = z, w / np.sqrt(2.0 * np.pi)
        self.u = np.zeros(self.q)  # the last conditional modes: PIRLS's next start
        self._start_pls: _StartProblem | None = None  # lme4_deviance's start
        self.n_evals = 0
        # a 0/1 binomial response: its deviance residuals from one logarithm (the same numbers)
        self._y_is_one = (
            (self.y == 1.0) if family.family == "binomial" and np.all((self.y == 0) | (self.y == 1)) else None
        )
        self.mustart = family.mustart(self.y, self.wt)
        # aic(mu) = sum d_i(mu) + this constant where the family allows (one aic, at mustart,
        # instead of one per evaluation: the binomial's and Poisson's log-gamma terms)
        self.aic_offset: float | None = None
        if aic_is_deviance_plus_constant(family, self.y, self.trials, self.wt):
            dsum0 = float(self.dev_resids(self.mustart).sum())
            self.aic_offset = float(family.aic(self.y, self.trials, self.mustart, self.wt, dsum0)) - dsum0

    # -- pieces ----------------------------------------------------------------------------
    def theta_start(self) -> np.ndarray:
        return np.where(self.lower == 0.0, 1.0, 0.0)

    def zlambda_u(self, u, templates) -> np.ndarray:
        """Z Lambda u: each term's rows times its level's b = T u_j, summed over the term's
        columns c as x_c * b_c[codes] (contiguous columns: one gather of a level vector each,
        no n x k gather)."""
        out = np.zeros(self.n)
        pos = 0
        for t, T, columns in zip(self.terms, templates, self._term_columns):
            bT = T @ u[pos : pos + t.q].reshape(t.nlevels, t.k).T  # b', k x levels
            part = columns[0] * bT[0][t.codes]
            for c in range(1, t.k):
                part += columns[c] * bT[c][t.codes]
            out += part
            pos += t.q
        return out

    def _mu(self, eta):
        """mu at eta, None where eta or mu is outside the family's range."""
        both = self._mu_and_slope(eta, slope=False)
        return None if both is None else both[0]

    def _mu_and_slope(self, eta, slope: bool = True):
        """(mu, d mu / d eta) at eta (the slope None unless ``slope``: the link computes the two
        together where that saves work), None where eta or mu is outside the family's range."""
        fam = self.family
        if not fam.link.valideta(eta):
            return None
        mu, d = fam.linkinv_mu_eta(eta) if slope else (fam.linkinv(eta), None)
        if not np.all(np.isfinite(mu)) or not fam.validmu(mu):
            return None
        return mu, d

    def aic(self, mu, dsum: float) -> float:
        """The family's aic at mu (-2 log p(y | mu)), ``dsum`` the deviance there."""
        if self.aic_offset is not None:
            return dsum + self.aic_offset
        return float(self.family.aic(self.y, self.trials, mu, self.wt, dsum))

    def dev_resids(self, mu) -> np.ndarray:
        if self._y_is_one is not None:
            return binomial_dev_binary(self._y_is_one, mu, self.wt)
        return self.family.dev_resids(self.y, mu, self.wt)

    def working(self, eta, mu, d=None):
        """Working weights and the working residual (y - mu) / mu_eta at eta (``d``: mu_eta
        there, if known)."""
        if d is None:
            d = self.family.mu_eta(eta)
        W = self.wt * d * d / self.family.variance(mu)
        return W, (self.y - mu) / d

    def pls_factor(self, theta, W, z):
        """The blocked factor of the penalised weighted least squares problem with weights W
        and response z (:class:`ReweightedLmm`: a linear mixed model's, X included)."""
        return self.pls.update(W, z).factor(theta)

    # -- PIRLS -------------------------------------------------------------------------------
    def pirls(self, theta, beta, joint: bool = False, u0=None) -> PirlsResult:
        """The conditional modes at theta (and beta, or with beta updated too when ``joint``)
        by PIRLS with step halving, and the deviance there."""
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        beta = np.atleast_1d(np.asarray(beta, dtype=float))
        templates = theta_templates(theta, self.ks)
        u = (self.u if u0 is None else u0).copy()
        xb = self.X @ beta
        eta = self.offset + xb + self.zlambda_u(u, templates)
        at = self._mu_and_slope(eta)
        if at is None:  # the warm start is off the family's range here: start afresh
            u = np.zeros(self.q)
            eta = self.offset + xb
            at = self._mu_and_slope(eta)
            if at is None:
                raise PirlsError("the linear predictor is outside the family's range at the start")
        mu, d = at
        dres = self.dev_resids(mu)  # kept with mu: the deviance at the end reuses them
        pdev = float(dres.sum() + u @ u)
        it = 0
        for it in range(1, self.max_iter + 1):
            W, r = self.working(eta, mu, d)
            L = self.pls_factor(theta, W, eta - self.offset + r)
            u_new, beta_new = L.solve_u_beta(None if joint else beta)
            step_u, step_b = u_new - u, beta_new - beta
            accepted = False
            for _ in range(PIRLS_MAX_HALVINGS + 1):
                xb_new = self.X @ beta_new if joint else xb
                eta_new = self.offset + xb_new + self.zlambda_u(u_new, templates)
                at_new = self._mu_and_slope(eta_new)
                if at_new is not None:
                    mu_new, d_new = at_new
                    dres_new = self.dev_resids(mu_new)
                    pdev_new = float(dres_new.sum() + u_new @ u_new)
                    if pdev_new <= pdev + 1e-12 * abs(pdev):
                        accepted = True
                        break
                step_u, step_b = step_u / 2, step_b / 2
                u_new, beta_new = u + step_u, beta + step_b
            if not accepted:
                break  # no step lowers pdev: at the mode to rounding
            change = abs(pdev - pdev_new)
            u, beta, xb, eta, mu, d, pdev, dres = u_new, beta_new, xb_new, eta_new, mu_new, d_new, pdev_new, dres_new
            if change < self.tol * (0.1 + abs(pdev)) and (
                self.step_tol is None
                or max(np.abs(step_u).max(initial=0.0), np.abs(step_b).max(initial=0.0))
                <= self.step_tol * (1.0 + np.abs(u).max(initial=0.0))
            ):
                break
        # the factor at the converged weights (its response is the working one: eta - offset
        # alone lies in the span of X when theta = 0, and the factor would break on it)
        W, r = self.working(eta, mu, d)
        L = self.pls_factor(theta, W, eta - self.offset + r)
        self.u = u
        self.n_evals += 1
        dsum = float(dres.sum())
        aic = self.aic(mu, dsum)
        if self.nAGQ <= 1:
            dev = aic + float(u @ u) + L.logdet_L2
        else:
            dev = self._agq(theta, beta, u, L, dres, aic, dsum)
        return PirlsResult(u, beta, eta, mu, W, L, float(dev), dsum, it)

    def _agq(self, theta, beta, u, L, dres, aic, dsum) -> float:
        """The adaptive Gauss-Hermite deviance of a single scalar term (module docstring)."""
        t = self.terms[0]
        codes, l = t.codes, t.nlevels
        x = t.X[:, 0] * theta[0]
        Ljj = L.L11.blocks.ravel()  # sqrt(1 + theta^2 sum W z^2) per level
        sd = 1.0 / Ljj
        base = self.offset + self.X @ beta
        pd0 = np.bincount(codes, weights=dres, minlength=l) + u * u
        mult = np.zeros(l)
        for zk, wk in zip(self.gh_nodes, self.gh_weights):
            uk = u + zk * sd
            mu = self._mu(base + x * uk[codes])
            if mu is None:
                return np.inf
            pdk = np.bincount(codes, weights=self.dev_resids(mu), minlength=l) + uk * uk
            mult += wk * np.exp(-(pdk - pd0) / 2.0 + zk * zk / 2.0)
        # lme4 leaves out aic - sum(d_i) here (a constant: the saturated model's -2 log-likelihood)
        return float(np.sum(pd0 - 2.0 * np.log(mult * sd)))

    def lme4_deviance(self, theta, beta, eta_start, tol: float = 1e-7) -> float:
        try:
            return self._lme4_deviance(theta, beta, eta_start, tol)
        except (PirlsError, np.linalg.LinAlgError, FloatingPointError):
            return np.inf

    def _lme4_deviance(self, theta, beta, eta_start, tol: float = 1e-7) -> float:
        """The Laplace deviance as lme4's PIRLS evaluates it, whose finite-difference Hessian
        lme4 reports (and makes vcov from): PIRLS started afresh from the linear predictor
        ``eta_start`` of the nAGQ = 0 stage (lme4's lp0), stopped when pdev changes by less
        than ``tol`` (glmerControl's tolPwrss) relative, and log|L|^2 taken from the factor of
        the last iteration, made at the weights before its step.  It differs from
        :meth:`deviance` by ~1e-4 near the optimum, and its curvature by up to a few per cent:
        what it is for is the standard errors lme4 prints."""
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        beta = np.atleast_1d(np.asarray(beta, dtype=float))
        templates = theta_templates(theta, self.ks)
        xb = self.X @ beta
        eta = np.asarray(eta_start, dtype=float)
        old, u_old = np.inf, None
        mu = d = None  # set by the first iteration, which starts from the kept factor
        for it in range(30):
            if it == 0:  # the weights at eta_start, the same for every (theta, beta)
                L = self._start_factor(theta, eta)
                if L is None:
                    return np.inf
            else:
                W, r = self.working(eta, mu, d)
                L = self.pls_factor(theta, W, eta - self.offset + r)
            u, _ = L.solve_u_beta(beta)
            eta = self.offset + xb + self.zlambda_u(u, templates)
            at = self._mu_and_slope(eta)
            if at is None:
                return np.inf
            mu, d = at
            dsum = self.dev_resids(mu).sum()  # at mu, as it stands at the end
            pdev = float(dsum + u @ u)
            if abs(old - pdev) < tol * abs(pdev):
                break
            if pdev > old and u_old is not None:  # lme4's halving: towards the last modes
                for _ in range(10):
                    u = (u + u_old) / 2
                    eta = self.offset + xb + self.zlambda_u(u, templates)
                    at = self._mu_and_slope(eta)
                    if at is None:
                        return np.inf
                    mu, d = at
                    dsum = self.dev_resids(mu).sum()
                    pdev = float(dsum + u @ u)
                    if pdev <= old:
                        break
            old, u_old = pdev, u
        return float(self.aic(mu, float(dsum)) + u @ u + L.logdet_L2)

    def _start_factor(self, theta, eta):
        """The penalised least-squares factor at theta with the working weights and response
        at eta (lme4's lp0, where every PIRLS of :meth:`lme4_deviance` starts), None where eta
        is outside the family's range; on a problem of its own kept at those weights: the
        cross-products are made once, and its factors are kept by theta (deriv12's Hessian
        meets each of its 2 n_theta^2 + 1 thetas many times, in an order that a small cache of
        the last few would miss).  The same numbers as :meth:`pls_factor` there."""
        held = self._start_pls
        if held is None or not np.array_equal(held.eta, eta):
            pls = held.pls if held is not None else self.pls.twin()
            at = self._mu_and_slope(eta)
            if at is not None:
                W, r = self.working(eta, *at)
                pls.update(W, eta - self.offset + r)
            held = self._start_pls = _StartProblem(eta.copy(), pls, at is not None, {})
        if not held.valid:
            return None
        key = theta.tobytes()
        L = held.factors.get(key)
        if L is None:
            L = held.factors[key] = held.pls.model.factor(theta)
            if len(held.factors) > self._start_factors_kept(L):
                held.factors.pop(next(iter(held.factors)))
        return L

    def _start_factors_kept(self, L) -> int:
        """How many start factors to keep: one per theta of deriv12's Hessian, as far as
        ``START_FACTORS_MAX_ENTRIES`` stored numbers go (a large dense tail keeps fewer)."""
        ntheta = self.lower.size
        entries = L.Ltt.size + L.Lt1_z.nnz + L.L11.blocks.size
        return max(1, min(2 * ntheta * ntheta + 1, START_FACTORS_MAX_ENTRIES // max(entries, 1)))

    # -- criteria for the optimizers -----------------------------------------------------------
    def deviance(self, theta, beta) -> float:
        """D(theta, beta), inf where PIRLS fails."""
        try:
            return self.pirls(theta, beta).deviance
        except (PirlsError, np.linalg.LinAlgError, FloatingPointError):
            return np.inf

    def nagq0_result(self, theta, beta0) -> PirlsResult | None:
        """PIRLS with beta found inside it (nAGQ = 0), starting from beta0; None where it fails."""
        try:
            return self.pirls(theta, beta0, joint=True)
        except (PirlsError, np.linalg.LinAlgError, FloatingPointError):
            return None

    def glm_start(self) -> np.ndarray:
        """beta of the GLM without random effects (IRLS from R's mustart): PIRLS's first beta."""
        mu = self.mustart
        eta = self.family.linkfun(mu)
        beta = np.zeros(self.p)
        dev_old = np.inf
        for _ in range(50):
            W, r = self.working(eta, mu)
            z = eta - self.offset + r
            sw = np.sqrt(W)
            beta = np.linalg.lstsq(self.X * sw[:, None], z * sw, rcond=None)[0]
            eta = self.offset + self.X @ beta
            mu = self._mu(eta)
            if mu is None:
                break
            dev = float(self.dev_resids(mu).sum())
            if abs(dev - dev_old) < 1e-10 * (0.1 + abs(dev)):
                break
            dev_old = dev
        return beta
