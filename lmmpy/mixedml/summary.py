"""``MixedML.summary()``: what was fitted and how, computed as data, printed as lme4 prints
its random effects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..results.rformat import format_num
from ..results.summary import DIGITS, random_effects_text, re_groups
from ..results.html import html_text

METHOD_NAMES = {"ml": "ML-EM", "reml": "REML-EM", "oob": "out of the box (lmer on the residuals)"}


@dataclass
class MixedMLSummary:
    method: str
    fixed_part: str
    random_part: str
    nobs: int
    ngrps: dict
    re_groups: list
    sigma: float
    n_iter: int
    converged: bool
    gll: float
    seconds: float
    mse_within: float
    mse_out: float

    @classmethod
    def from_model(cls, m) -> "MixedMLSummary":
        random = m.random_part_
        y = m.fitted_ + m.residuals_
        terms = random.terms if random is not None else []
        if m.method == "oob" and m.oob_backend == "statsmodels":
            method = "out of the box (statsmodels MixedLM on the residuals)"
        else:
            method = METHOD_NAMES[m.method]
        return cls(
            method=method,
            fixed_part=repr(m.estimator_) if m.estimator is not None else "least squares (linear)",
            random_part=" + ".join(f"({t.lhs} | {t.group})" for t in terms) if terms else "none",
            nobs=len(y),
            ngrps={t.group: t.nlevels for t in terms},
            re_groups=re_groups(terms, random.covariances(m.state_)) if terms else [],
            sigma=m.sigma_,
            n_iter=m.n_iter_,
            converged=m.converged_,
            gll=float(m.gll_trace_[-1]) if m.gll_trace_.size else np.nan,
            seconds=m.fit_seconds_,
            mse_within=float(np.mean((y - m.fitted_) ** 2)),
            mse_out=float(np.mean((y - m.fitted_fixed_) ** 2)),
        )

    def __str__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        lines = [
            f"Mixed-effects machine learning (mixedML), fitted by {self.method}",
            f" Fixed part:  {self.fixed_part}",
            f" Random part: {self.random_part}",
            f" Iterations:  {self.n_iter} ({status}), GLL {self.gll:.2f}, {self.seconds:.2f} s",
            "",
        ]
        out = "\n".join(lines) + "\n"
        if self.re_groups:
            out += random_effects_text(self.re_groups, self.sigma)
            out += (
                f"Number of obs: {self.nobs}, groups:  " + "; ".join(f"{g}, {n}" for g, n in self.ngrps.items()) + "\n"
            )
        else:
            out += f"Residual Std.Dev.: {format_num(self.sigma, DIGITS)}\nNumber of obs: {self.nobs}\n"
        out += (
            f"\nTraining MSE: within {format_num(self.mse_within, DIGITS)} (f(X) + Z b), "
            f"out {format_num(self.mse_out, DIGITS)} (f(X) alone)\n"
        )
        return out

    def _repr_html_(self) -> str:
        return html_text(str(self))
