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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..formula.design import Design
from ..formula.theta_layout import tril_positions
from .deviance import LmmModel
from .status import FitNote, FitStatus, Note

SCALE_RANGE = (1e-3, 1e3)  # a column whose largest |value| lies outside is rescaled


def column_scales(M: np.ndarray) -> np.ndarray:
    """Per column of M: 1 if its largest |value| lies in SCALE_RANGE (or it is all zeros),
    else the power of two nearest to that value (in log scale)."""
    top = np.max(np.abs(M), axis=0) if M.shape[0] else np.zeros(M.shape[1])
    lo, hi = SCALE_RANGE
    out = np.ones(M.shape[1])
    bad = (top > 0) & np.isfinite(top) & ((top < lo) | (top > hi))
    out[bad] = np.exp2(np.round(np.log2(top[bad])))
    return out


def _rescaled(name: str, s: float) -> str:
    e = int(np.log2(s))
    return f"{name} / 2^{e}" if e > 0 else f"{name} * 2^{-e}"


@dataclass(frozen=True)
class ColumnScaling:
    """The scales of X's columns (``x``) and of each random-effects term's columns (``z``):
    user column = internal column * scale."""

    x: np.ndarray
    z: tuple

    @classmethod
    def of(cls, design: Design):
        """The scaling a design needs, or None when every column is within SCALE_RANGE."""
        x = column_scales(design.X)
        z = tuple(column_scales(t.X) for t in design.reterms)
        if np.all(x == 1) and all(np.all(d == 1) for d in z):
            return None
        return cls(x, z)

    @property
    def theta_factor(self) -> np.ndarray:
        """c with theta_internal = c * theta: each template entry times its row's d."""
        return np.array([d[row] for d in self.z for row, _ in tril_positions(d.size)])

    def theta_to_internal(self, theta):
        return np.asarray(theta, dtype=float) * self.theta_factor

    def theta_to_user(self, theta):
        return np.asarray(theta, dtype=float) / self.theta_factor

    def criterion_shift(self, REML: bool) -> float:
        """The user's criterion minus the internal one: 2 sum log s for REML, 0 for ML."""
        return float(2.0 * np.sum(np.log(self.x))) if REML else 0.0

    def internal_design(self, design: Design) -> Design:
        terms = [dataclasses.replace(t, X=t.X / d) for t, d in zip(design.reterms, self.z)]
        return dataclasses.replace(design, X=design.X / self.x, reterms=terms)

    def internal_model(self, model: LmmModel) -> LmmModel:
        assert model.design is not None, "rescaling needs the model's design"
        return LmmModel(self.internal_design(model.design), REML=model.REML)

    def describe(self, design: Design) -> str:
        parts = [_rescaled(nm, s) for nm, s in zip(design.xnames, self.x) if s != 1]
        for t, d in zip(design.reterms, self.z):
            parts += [f"{_rescaled(nm, s)} in ({t.lhs} | {t.group})" for nm, s in zip(t.cnames, d) if s != 1]
        return "fitted on rescaled columns (" + ", ".join(parts) + "); reported on the data's scale"

    def opt_to_user(self, opt, model: LmmModel):
        """The internal fit's record in the user's coordinates; leaves ``model`` (the user's)
        at the optimum, whose criterion it reports (the internal one plus the shift, to rounding)."""
        c = self.theta_factor
        opt.theta = self.theta_to_user(opt.theta)
        opt.theta0 = self.theta_to_user(opt.theta0)
        opt.lower = model.lower.copy()
        if opt.gradient is not None:
            opt.gradient = np.asarray(opt.gradient) * c
        if opt.hessian is not None:
            opt.hessian = np.asarray(opt.hessian) * np.outer(c, c)
        internal_fmin = opt.fmin
        opt.fmin = float(model(opt.theta))
        if np.isfinite(internal_fmin) and not np.isfinite(opt.fmin):
            opt.converged = False
            opt.message = "the criterion is not finite on the data's own scale at the rescaled fit's optimum"
            opt.failure = FitStatus.NONFINITE
        opt.scaling = self
        assert model.design is not None, "rescaling needs the model's design"
        opt.fit_notes = opt.fit_notes + [FitNote(Note.RESCALED, detail=self.describe(model.design))]
        return opt


def on_internal_scale(model: LmmModel, fit, start=None):
    """``fit(model, start)`` (any routine returning an OptSummary), run on the internally
    rescaled columns when ``model``'s design needs it, its result mapped back to ``model``."""
    assert model.design is not None, "rescaling needs the model's design"
    scaling = ColumnScaling.of(model.design)
    if scaling is None:
        return fit(model, start)
    inner = scaling.internal_model(model)
    if start is not None and not isinstance(start, str) and np.atleast_1d(start).shape == inner.theta.shape:
        start = scaling.theta_to_internal(start)
    return scaling.opt_to_user(fit(inner, start), model)
