r"""Fitting on internally rescaled columns, reporting on the user's scale.

A covariate measured in tiny or huge units (``Days * 1e8``) leaves the criterion unchanged in
substance but moves its optimum in theta to 1e-9 or 1e7: far from the optimizer's start
(theta = 1), its step sizes and the checks' tolerances (a finite-difference step of 1e-4, the
singular tolerance 1e-4).  Fitted as it is, such a model stops at a wrong optimum.  So a model
whose columns are badly scaled is fitted on rescaled columns and mapped back.

The maps.  Let X = X_s S with S = diag(s) (s_j the scale of X's column j), and for each
random-effects term i with raw model matrix X_i (n x k_i) let X_i = X_{i,s} D_i, D_i = diag(d_i),
so that Z_i = Z_{i,s} (I_l (x) D_i).  Then

- fixed effects: X beta = X_s beta_s with beta_s = S beta, and Var(beta) = S^{-1} Var(beta_s) S^{-1};
- random effects: Z_i b_i = Z_{i,s} b_{i,s} with b_{ij,s} = D_i b_ij for every level j, so the
  term's covariance is Sigma_{i,s} = D_i Sigma_i D_i, and with Sigma_i = sigma^2 T_i T_i'
  (T_i lower triangular, lme4's template of theta) T_{i,s} = D_i T_i, still lower triangular
  with the same signs on its diagonal (d > 0): theta's entry in row a of the template is
  multiplied by d_{i,a}, a diagonal map theta_s = c o theta that keeps lme4's bounds;
- Z Lambda_theta = Z_s Lambda_{theta_s}, hence Lambda'Z'Z Lambda, L_theta, the penalised
  residual sum of squares and sigma are the same, while X's Schur complement in the factor is
  S (internal one) S, so R_X = S R_{X,s} and log|R_X|^2 = log|R_{X,s}|^2 + 2 sum_j log s_j.  So

      ML deviance:     d(theta)   = d_s(c o theta)
      REML criterion:  d_R(theta) = d_{R,s}(c o theta) + 2 sum_j log s_j

  (the log-determinant of the X scaling; the d_i do not appear), the optima correspond, and
  derivatives map by the chain rule: grad = c o grad_s, Hessian = diag(c) H_s diag(c).

The scales are powers of two, so that every map above is exact in binary floating point and
the model on the user's own columns, evaluated at the mapped optimum, does the same
arithmetic as the internal one (barring overflow): only the optimizer's path depends on the
parametrisation.  That is how the fit is used: optimized (and checked) on the internal
columns, then :class:`lmmpy.results.model.LmerFit` is built on the user's model at the mapped
theta, so estimates, vcov, conditional modes, predictions and the summary need no
conversion; what differentiates in theta (Satterthwaite, profiles, Kenward-Roger) works in
the internal coordinates through :attr:`ColumnScaling.theta_factor`.

When.  A column is rescaled only when its largest absolute value lies outside
[1e-3, 1e3] (SCALE_RANGE), to s = the power of two nearest to it; others keep s = 1 and a model
with no such column is fitted exactly as before.  Always rescaling would be harmless in
exact arithmetic but moves the optimizer's path, and with it the last digits of every
existing match with lme4; the range is lme4's own yardstick (check.scaleX warns when a
continuous column's SD, or the ratio of two, is beyond 1e3 or below 1e-3), and every
reference model's columns lie well inside it (largest 346, smallest 1).  The
largest absolute value rather than a root mean square, so that a rare 0/1 indicator is not
inflated.

Centring (glmer).  A covariate far from 0 relative to its spread (``x + 100`` with SD 1) in a
random-effects term beside the term's intercept makes the two columns nearly collinear: the
intercept's variance in theta is then that of the linear predictor at x = 0, a hundred SDs
away from the data, and the criterion's valleys in (theta, beta) run along narrow diagonals
that the Newton and quasi-Newton steps do not follow (lme4's own fit stops early).  Such a
column is centred, internal column = (x - m) / s, in the term and, when X has an intercept
and the same column, in X.  The rule: a term column (not the intercept) of a term with an
intercept is centred when |mean| > CENTRE_RATIO * SD over the data's rows; at ratio r the two
columns' correlation is r / sqrt(1 + r^2) and their cross-product matrix's condition number
grows as r^2 (~400 at r = 10), where finite differences at steps of 1e-4 start to lose the
digits the checks need.  A column only in X (its collinearity with the intercept is in beta
alone, which the Newton steps handle) is left alone, so are lmer's models (``centre=False``).

The maps of centring are not diagonal.  With X = X_c M (M[j, j] = s_j, M[i0, j] = m_j, i0 the
intercept's column), X beta = X_c beta_c with beta_c = M beta (the centred intercept is
b_0 + m b_1); for a term, X_i = X_{i,c} A_i likewise (A_i[c, c] = d_c, A_i[0, c] = m_c), so
b_{ij,c} = A_i b_ij and Sigma_{i,c} = A_i Sigma_i A_i', whose lower-triangular factor T_{i,c}
(positive diagonal; lme4's theta) is the triangular factor of A_i T_i re-triangularised
(:func:`lower_factor`, an LQ decomposition: T_{i,c} T_{i,c}' = A_i T_i T_i' A_i', exact where
Sigma is singular too).  Both Z Lambda_theta and X beta are the same, so is the Laplace (or
AGQ, or nAGQ = 0) deviance; its derivatives map by the chain rule with the Jacobian J of
x_c = F(x), x = (theta, beta): grad = J' grad_c, Hessian = J' H_c J (exact at a stationary
point), J = diag(dtheta_c / dtheta, M).  Columns that are only rescaled keep the exact
diagonal maps above; a model with neither is fitted exactly as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..formula.design import Design
from ..formula.theta_layout import theta_from_templates, theta_templates, tril_positions
from .deviance import LmmModel
from .status import Check, CheckFinding, FitNote, FitStatus, Note

SCALE_RANGE = (1e-3, 1e3)  # a column whose largest |value| lies outside is rescaled
CENTRE_RATIO = 10.0  # glmer: a term's column whose |mean| exceeds this many SDs is centred
INTERCEPT = "(Intercept)"
# the data's own columns must reproduce the internal fit's criterion at its optimum to this,
# relative: rounding alone leaves ~1e-12 (power-of-two scales: 0) to 1e-9 (a column 1e4 SDs
# from 0, sleepstudy's Days + 1e4); 1e-7 is where printed log-likelihoods move (Days + 1e5: 2e-7)
CONFIRM_RTOL = 1e-7


def column_scales(M: np.ndarray) -> np.ndarray:
    """Per column of M: 1 if its largest |value| lies in SCALE_RANGE (or it is all zeros),
    else the power of two nearest to that value (in log scale)."""
    top = np.max(np.abs(M), axis=0) if M.shape[0] else np.zeros(M.shape[1])
    lo, hi = SCALE_RANGE
    out = np.ones(M.shape[1])
    bad = (top > 0) & np.isfinite(top) & ((top < lo) | (top > hi))
    out[bad] = np.exp2(np.round(np.log2(top[bad])))
    return out


def centring_shifts(design: Design) -> tuple:
    """The means to subtract (module docstring, "Centring"): (per X column, per term's
    columns), zeros where a column is not centred."""
    x_shift = np.zeros(design.p)
    z_shift = []
    x_intercept = INTERCEPT in design.xnames
    for t in design.reterms:
        m = np.zeros(t.k)
        if t.cnames[0] == INTERCEPT and t.X.shape[0] > 1:
            for c, name in enumerate(t.cnames):
                col = t.X[:, c]
                mean, sd = float(np.mean(col)), float(np.std(col))
                if name == INTERCEPT or not (sd > 0 and abs(mean) > CENTRE_RATIO * sd):
                    continue
                m[c] = mean
                if x_intercept and name in design.xnames:
                    j = design.xnames.index(name)
                    if np.array_equal(design.X[:, j], col):
                        x_shift[j] = mean
        z_shift.append(m)
    return x_shift, tuple(z_shift)


def lower_factor(M: np.ndarray) -> np.ndarray:
    """The lower-triangular L with a non-negative diagonal and L L' = M M' (M square): the L of
    M's LQ decomposition, from the QR decomposition of M'; exact also for a singular M M'."""
    Q, R = np.linalg.qr(M.T)
    signs = np.where(np.diag(R) < 0, -1.0, 1.0)
    return np.tril(R.T * signs[None, :])


def _rescaled(name: str, s: float) -> str:
    e = int(np.log2(s))
    return f"{name} / 2^{e}" if e > 0 else f"{name} * 2^{-e}"


def _described(name: str, s: float, m: float) -> str:
    if m == 0:
        return _rescaled(name, s)
    centred = f"({name} - {m:.6g})" if s != 1 else f"{name} - {m:.6g}"
    return _rescaled(centred, s) if s != 1 else centred


@dataclass(frozen=True)
class ColumnScaling:
    """The scales of X's columns (``x``) and of each random-effects term's columns (``z``),
    and (glmer) the means they are centred by (``x_shift``, ``z_shift``; None: none):
    user column = internal column * scale + shift."""

    x: np.ndarray
    z: tuple
    x_shift: np.ndarray | None = None
    z_shift: tuple | None = None
    x_intercept: int = 0  # X's intercept column (where a centring of X adds sum_j m_j beta_j)

    @classmethod
    def of(cls, design: Design, centre: bool = False):
        """The scaling a design needs, or None when every column is within SCALE_RANGE (and,
        ``centre``, none is to be centred: glmer's rule, module docstring)."""
        if centre:
            x_shift, z_shift = centring_shifts(design)
            if not (np.any(x_shift != 0) or any(np.any(m != 0) for m in z_shift)):
                return cls.of(design)
            x = column_scales(design.X - x_shift)
            z = tuple(column_scales(t.X - m) for t, m in zip(design.reterms, z_shift))
            x_intercept = design.xnames.index(INTERCEPT) if INTERCEPT in design.xnames else 0
            return cls(x, z, x_shift, z_shift, x_intercept)
        x = column_scales(design.X)
        z = tuple(column_scales(t.X) for t in design.reterms)
        if np.all(x == 1) and all(np.all(d == 1) for d in z):
            return None
        return cls(x, z)

    @property
    def centred(self) -> bool:
        return self.x_shift is not None

    @property
    def theta_factor(self) -> np.ndarray:
        """c with theta_internal = c * theta: each template entry times its row's d (a
        rescaling's; a centring's map is not diagonal)."""
        assert not self.centred, "a centring's theta map is not diagonal"
        return np.array([d[row] for d in self.z for row, _ in tril_positions(d.size)])

    def _term_maps(self) -> list:
        """A_i per term (X_i = X_{i,c} A_i), None for a term that is only rescaled."""
        out: list = []
        for i, d in enumerate(self.z):
            m = None if self.z_shift is None else self.z_shift[i]
            if m is None or not np.any(m != 0):
                out.append(None)
                continue
            A = np.diag(d)
            A[0, :] += m  # the intercept is the term's first column (centring_shifts' rule)
            out.append(A)
        return out

    def _map_theta(self, theta, to_internal: bool) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if not self.centred:
            c = self.theta_factor
            return theta * c if to_internal else theta / c
        ks = [d.size for d in self.z]
        out = []
        for T, d, A in zip(theta_templates(theta, ks), self.z, self._term_maps()):
            if A is None:  # the diagonal map, exact: row a of T times d_a
                out.append(T * d[:, None] if to_internal else T / d[:, None])
            else:
                out.append(lower_factor(A @ T if to_internal else np.linalg.solve(A, T)))
        return theta_from_templates(out)

    def theta_to_internal(self, theta):
        return self._map_theta(theta, True)

    def theta_to_user(self, theta):
        return self._map_theta(theta, False)

    def beta_to_internal(self, beta) -> np.ndarray:
        """beta_c = M beta: each coefficient times its column's scale, the intercept plus
        sum_j m_j beta_j (the linear predictor at the centres)."""
        beta = np.asarray(beta, dtype=float)
        out = beta * self.x
        if self.centred:
            out[self.x_intercept] += float(self.x_shift @ beta)
        return out

    def beta_to_user(self, beta) -> np.ndarray:
        beta = np.asarray(beta, dtype=float)
        out = beta / self.x
        if self.centred:
            i0 = self.x_intercept
            out[i0] -= float(self.x_shift @ out) / self.x[i0]
        return out

    def jacobian(self, theta) -> np.ndarray:
        """J = d(theta_c, beta_c) / d(theta, beta) at the user's theta: diag(c) or the centred
        terms' blocks (central differences of their re-triangularisation: smooth where Sigma
        is not singular, errors ~1e-10 at steps of 1e-6), then M for beta."""
        theta = np.asarray(theta, dtype=float)
        nt, p = theta.size, self.x.size
        J = np.zeros((nt + p, nt + p))
        if not self.centred:
            J[:nt, :nt] = np.diag(self.theta_factor)
        else:
            for a in range(nt):
                h = 1e-6 * max(1.0, abs(theta[a]))
                e = np.zeros(nt)
                e[a] = h
                J[:nt, a] = (self.theta_to_internal(theta + e) - self.theta_to_internal(theta - e)) / (2 * h)
        J[nt:, nt:] = np.column_stack([self.beta_to_internal(e) for e in np.eye(p)])
        return J

    def criterion_shift(self, REML: bool) -> float:
        """The user's criterion minus the internal one: 2 sum log s for REML, 0 for ML."""
        return float(2.0 * np.sum(np.log(self.x))) if REML else 0.0

    def internal_design(self, design: Design) -> Design:
        if not self.centred:
            terms = [dataclasses.replace(t, X=t.X / d) for t, d in zip(design.reterms, self.z)]
            return dataclasses.replace(design, X=design.X / self.x, reterms=terms)
        assert self.z_shift is not None and self.x_shift is not None
        terms = [dataclasses.replace(t, X=(t.X - m) / d) for t, d, m in zip(design.reterms, self.z, self.z_shift)]
        return dataclasses.replace(design, X=(design.X - self.x_shift) / self.x, reterms=terms)

    def internal_model(self, model: LmmModel) -> LmmModel:
        assert model.design is not None, "rescaling needs the model's design"
        return LmmModel(self.internal_design(model.design), REML=model.REML)

    def describe(self, design: Design) -> str:
        xm = np.zeros(self.x.size) if self.x_shift is None else self.x_shift
        zm = [np.zeros(d.size) for d in self.z] if self.z_shift is None else self.z_shift
        parts = [_described(nm, s, m) for nm, s, m in zip(design.xnames, self.x, xm) if s != 1 or m != 0]
        for t, d, ms in zip(design.reterms, self.z, zm):
            parts += [
                f"{_described(nm, s, m)} in ({t.lhs} | {t.group})"
                for nm, s, m in zip(t.cnames, d, ms)
                if s != 1 or m != 0
            ]
        rescaled = np.any(self.x != 1) or any(np.any(d != 1) for d in self.z)
        what = ("centred and rescaled" if rescaled else "centred") if self.centred else "rescaled"
        return f"fitted on {what} columns (" + ", ".join(parts) + "); reported on the data's scale"

    def opt_to_user(self, opt, model: LmmModel):
        """The internal fit's record in the user's coordinates; leaves ``model`` (the user's)
        at the optimum, whose criterion it reports (the internal one plus the shift, to rounding).
        The derivatives: grad = J' grad_c, Hessian = J' H_c J with J theta's block of
        :meth:`jacobian` (diag(c) for a rescaling)."""
        opt.theta = self.theta_to_user(opt.theta)
        opt.theta0 = self.theta_to_user(opt.theta0)
        opt.lower = model.lower.copy()
        nt = opt.theta.size
        self._derivatives_to_user(opt, self.jacobian(opt.theta)[:nt, :nt], ("gradient",), ("hessian",))
        internal_fmin = opt.fmin + self.criterion_shift(model.REML)
        opt.fmin = float(model(opt.theta))
        self._confirm(opt, model.design, internal_fmin)
        return opt

    @staticmethod
    def _derivatives_to_user(opt, J, gradients, hessians) -> None:
        """The record's named gradients g -> J'g and Hessians H -> J'HJ; entrywise where J is
        diagonal (a rescaling: powers of two, exact, and a NaN stays in its own entries)."""
        d = np.diagonal(J)
        diagonal = np.array_equal(J, np.diag(d))
        for name in gradients:
            g = getattr(opt, name)
            if g is not None:
                g = np.asarray(g, dtype=float)
                setattr(opt, name, g * d if diagonal else J.T @ g)
        for name in hessians:
            H = getattr(opt, name)
            if H is not None:
                H = np.asarray(H, dtype=float)
                setattr(opt, name, H * np.outer(d, d) if diagonal else J.T @ H @ J)

    def _confirm(self, opt, design, internal_fmin: float) -> None:
        """After the user's model has evaluated ``opt.fmin`` at the mapped optimum: a failure
        if it is not finite where the internal fit's was, then :meth:`_record`."""
        if np.isfinite(internal_fmin) and not np.isfinite(opt.fmin):
            opt.converged = False
            opt.message = "the criterion is not finite on the data's own columns at the internal fit's optimum"
            opt.failure = FitStatus.NONFINITE
        self._record(opt, design, opt.fmin - internal_fmin)

    def _record(self, opt, design, gap: float) -> None:
        """The record's scaling, note and the confirmation on the data's own columns: their
        criterion at the mapped optimum minus the internal one (``gap``) beyond
        CONFIRM_RTOL (1 + |criterion|) is a finding (the user's columns cannot evaluate
        their own optimum: lmer's estimates, made on them, have lost digits too).
        ``opt.scaling`` is what maps theta diagonally (the singular check's and finite
        differences' steps in theta, Kenward-Roger's scales): a centring's map is not
        diagonal, and its fit's theta is taken as the user's there."""
        assert design is not None, "rescaling needs the model's design"
        tol = CONFIRM_RTOL * (1.0 + abs(opt.fmin))
        if np.isfinite(gap) and abs(gap) > tol:
            opt.findings = opt.findings + [CheckFinding(Check.COLUMNS_LOSE_DIGITS, value=float(gap), tol=tol)]
        opt.scaling = None if self.centred else self
        kind = Note.CENTRED if self.centred else Note.RESCALED
        opt.fit_notes = opt.fit_notes + [FitNote(kind, detail=self.describe(design))]

    def glmm_opt_to_user(self, opt, model):
        """A glmer fit's record made on the internal columns, in the user's coordinates
        (theta, beta, their derivatives by the Jacobian: grad = J' grad_c, Hessian = J' H_c J),
        its deviance that of ``model`` (a GlmmModel on the user's columns) at the mapped
        estimates: the confirmation that they are the same fit there."""
        theta_c = opt.theta
        opt.theta = self.theta_to_user(theta_c)
        opt.beta = self.beta_to_user(opt.beta)
        opt.theta0 = self.theta_to_user(opt.theta0)
        opt.lower = model.lower.copy()
        self._derivatives_to_user(
            opt, self.jacobian(opt.theta), ("gradient", "gradient_lme4"), ("hessian", "hessian_exact")
        )
        internal_fmin = opt.fmin
        if model.nAGQ == 0:
            found = model.nagq0_result(opt.theta, opt.beta)
            opt.fmin = np.inf if found is None else float(found.deviance)
        else:
            opt.fmin = float(model.deviance(opt.theta, opt.beta))
        self._confirm(opt, model.design, internal_fmin)
        return opt


def on_internal_scale(model: LmmModel, fit, start=None):
    """``fit(model, start)`` (any routine returning an OptSummary), run on the internally
    rescaled (and centred) columns when ``model``'s design needs it, its result mapped back
    to ``model``."""
    assert model.design is not None, "rescaling needs the model's design"
    scaling = ColumnScaling.of(model.design, centre=True)
    if scaling is None:
        return fit(model, start)
    inner = scaling.internal_model(model)
    if start is not None and not isinstance(start, str) and np.atleast_1d(start).shape == inner.theta.shape:
        start = scaling.theta_to_internal(start)
    return scaling.opt_to_user(fit(inner, start), model)
