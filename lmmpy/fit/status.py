"""A fit's status as data: what the optimizer and the checks at its optimum found, as enums
and numbers; the text lme4 prints is made from them only when shown (``str``).

- :class:`CheckFinding`: one finding of the checks at the optimum (lme4's
  ``conv$lme4$messages``): its :class:`Check` kind and the numbers behind it.
- :class:`FitNote`: one thing the fit did on the way (a restart off a bound, an EM start, the
  EM fallback, rescaled columns).
- :class:`FitStatus`: the fit's overall status, derived from the record (``OptSummary.status``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FitStatus(enum.Enum):
    """What a fit's record says about its optimum, most serious first."""

    OPTIMIZER_ERROR = "the optimizer stopped with an error"
    NONFINITE = "the criterion or its gradient is not finite at the optimum"
    NOT_CONVERGED = "the optimizer reported no convergence"
    FAILED_GRADIENT_CHECK = "the gradient check at the optimum failed"
    FAILED_HESSIAN_CHECK = "the Hessian check at the optimum failed"
    EM_FALLBACK = "the optimizer failed; refitted by EM"
    BOUNDARY = "boundary (singular) fit"
    CONVERGED = "converged"


class Check(enum.Enum):
    """The kinds of finding of lme4's checkConv (and whether each fails the fit)."""

    BOUNDARY = "boundary"  # a variance parameter below the singular tolerance
    GRADIENT_NAS = "gradient NAs"
    GRADIENT_TOO_LARGE = "gradient too large"  # value: max|grad| scaled; tol: grad_tol
    SCALED_GRADIENT_UNAVAILABLE = "scaled gradient unavailable"  # H not positive definite
    HESSIAN_PROBLEM = "Hessian problem"  # eigenvalues not computable
    HESSIAN_NEGATIVE = "degenerate Hessian"  # value: the number of negative eigenvalues
    HESSIAN_SINGULAR = "singular Hessian"
    LARGE_EIGENVALUE = "very large eigenvalue"
    EIGENVALUE_RATIO = "large eigenvalue ratio"
    # lmmpy's: the data's own columns do not reproduce the centred/rescaled fit's criterion at
    # its optimum (lmmpy.fit.scaling): value, the difference; tol, the tolerance
    COLUMNS_LOSE_DIGITS = "criterion lost to rounding on the data's columns"


# findings that make the fit a failure (lme4's negative convergence codes): the EM fallback's trigger
GRADIENT_FAILURES = frozenset({Check.GRADIENT_NAS, Check.GRADIENT_TOO_LARGE, Check.SCALED_GRADIENT_UNAVAILABLE})
HESSIAN_FAILURES = frozenset({Check.HESSIAN_NEGATIVE})


@dataclass(frozen=True)
class CheckFinding:
    """One finding of the checks at the optimum: its kind and numbers (lme4's wording on str)."""

    kind: Check
    value: float | None = None
    tol: float | None = None

    @property
    def fails_fit(self) -> bool:
        return self.kind in GRADIENT_FAILURES or self.kind in HESSIAN_FAILURES

    def __str__(self) -> str:
        k = self.kind
        if k is Check.BOUNDARY:
            return "boundary (singular) fit: see help('isSingular')"
        if k is Check.GRADIENT_NAS:
            return "Gradient contains NAs"
        if k is Check.GRADIENT_TOO_LARGE:
            return f"Model failed to converge with max|grad| = {self.value:g} (tol = {self.tol:g}, component 1)"
        if k is Check.SCALED_GRADIENT_UNAVAILABLE:
            return "unable to evaluate scaled gradient"
        if k is Check.HESSIAN_PROBLEM:
            return "Problem with Hessian check (infinite or missing values?)"
        if k is Check.HESSIAN_NEGATIVE:
            neg = int(self.value or 0)
            return f"Model failed to converge: degenerate  Hessian with {neg} negative eigenvalue" + (
                "s" if neg > 1 else ""
            )
        if k is Check.HESSIAN_SINGULAR:
            return " Hessian is numerically singular: parameters are not uniquely determined"
        if k is Check.LARGE_EIGENVALUE:
            return "Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?"
        if k is Check.COLUMNS_LOSE_DIGITS:
            return (
                f"the criterion on the data's own columns differs by {self.value:.3g} from the centred or "
                "rescaled fit's at its optimum: the data's columns lose digits to rounding - "
                "centre or rescale the covariates?"
            )
        return "Model is nearly unidentifiable: large eigenvalue ratio\n - Rescale variables?"


class Note(enum.Enum):
    """The kinds of thing a fit did on the way to its optimum."""

    RESTART_EDGE = "restart_edge"
    EM_START = "EM start"
    EM_FALLBACK = "EM fallback"
    RESCALED = "rescaled columns"
    CENTRED = "centred columns"  # columns centred (and maybe rescaled), see lmmpy.fit.scaling


@dataclass(frozen=True)
class FitNote:
    """One note of the fit: its kind and numbers (``str``: the text the summary prints).

    EM_START: ``steps``; EM_FALLBACK: ``optimizer`` that failed, ``reason`` (the finding or
    the optimizer's message), EM's ``steps``, ``kept_em`` (EM's estimate kept, or the optimizer
    run again from it); RESCALED, CENTRED: ``detail`` (the scaling's description)."""

    kind: Note
    steps: int | None = None
    optimizer: str | None = None
    reason: str | None = None
    kept_em: bool | None = None
    detail: str | None = None

    def __str__(self) -> str:
        k = self.kind
        if k is Note.RESTART_EDGE:
            return "restarted off a zero bound (restart_edge)"
        if k is Note.EM_START:
            return f"started from {self.steps} EM steps"
        if k is Note.EM_FALLBACK:
            return (
                f"the optimizer ({self.optimizer}) failed ({self.reason}); refitted by EM "
                f"({self.steps} steps), then "
                + ("kept EM's estimate" if self.kept_em else "the optimizer from EM's estimate")
            )
        return self.detail or ""
