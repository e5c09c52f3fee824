r"""Convergence of the mixedML iterations, and their progress lines (``verbose=``).

Each iteration (one fit of f, or a SQUAREM cycle of two or three) is compared with the one
before by three changes:

    GLL change      |GLL_t - GLL_{t-1}| / max(1, |GLL_t|)          the paper's monitor
    parameter change  max_i |x_t,i - x_{t-1},i|,  x = (theta, log sigma^2)
    fitted change     RMS(fitted_t - fitted_{t-1}) / sigma_t,   fitted = f(X) + Z b

theta holds the random effects' relative standard deviations and correlations (Lambda's
templates, sd / sigma), log sigma^2 the residual variance's relative change: all unit-free,
so one tolerance serves.  The fitted change is in units of the residual SD, what separates a
move of the predictions that matters from one that does not.

The GLL alone cannot serve: it is the joint (h-)likelihood of the parameters *and* b, and
falls without bound as a covariance matrix nears singularity (log|Sigma| -> -inf), so it can
drift for hundreds of iterations while the estimates barely move; and an f that is trained
only to a tolerance of its own (libsvm's 1e-3 for an SVR, early stopping, a random forest)
moves the GLL by more than 1e-8 in every refit.  A step is therefore small when

    GLL change <= tol,   or   parameter change <= tol_change  and  fitted change <= tol_change.

A small EM step is not yet convergence: EM's rate can be close to 1 (with SVR() as f on
mlbook2's ``langPOST ~ IQ_verb + ses + sch_iqv + (IQ_verb | schoolnr)`` its steps shrink to
5e-6 while its limit is still 7e-4 away), so the estimator then
moves the random part to its ML / REML optimum for the current residuals (EM's limit for
them) and has converged when that move, measured the same way, is within ``tol_change``.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np


@dataclasses.dataclass
class Snapshot:
    """What one iteration ended with."""

    gll: float
    theta: np.ndarray
    sigma2: float
    fitted: np.ndarray


@dataclasses.dataclass
class Changes:
    """How far one iteration moved (see the module docstring)."""

    gll: float
    params: float
    fitted: float

    @classmethod
    def between(cls, last: Snapshot, now: Snapshot) -> "Changes":
        gll = abs(now.gll - last.gll) / max(1.0, abs(now.gll))
        if not np.isfinite(gll):
            gll = np.inf
        x_now = np.append(now.theta, np.log(now.sigma2))
        x_last = np.append(last.theta, np.log(last.sigma2))
        params = float(np.max(np.abs(x_now - x_last))) if x_now.size else 0.0
        fitted = float(np.sqrt(np.mean((now.fitted - last.fitted) ** 2)) / np.sqrt(now.sigma2))
        return cls(gll, params, fitted)

    def settled(self, tol: float, tol_change: float) -> bool:
        return bool(self.gll <= tol or (self.params <= tol_change and self.fitted <= tol_change))


class Progress:
    """Prints the iterations as they go: nothing for ``verbose`` False / 0; for 1 (True) the
    first ten steps, then every tenth; for 2 or more every step; each line the step (one
    accepted update: a plain iteration or a SQUAREM cycle), the iterations so far (fits of f,
    what ``max_iter`` bounds), the GLL, its relative change, the parameter and fitted changes,
    the seconds since the start and how the random part was updated; the last step is always
    shown.  After a move to the optimum the GLL is the optimum's, and the changes are the
    move's when it followed a small step (what convergence then depends on)."""

    HEADER = (
        f"{'step':>5} {'iter':>5} {'GLL':>15} {'GLL change':>11} {'param change':>13} "
        f"{'fitted change':>14} {'elapsed':>9}  random part"
    )

    def __init__(self, verbose):
        self.level = int(verbose)

    def _print(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    def start(self, description: str) -> None:
        if self.level > 0:
            self._print(description)
            self._print(self.HEADER)

    def step(
        self,
        step: int,
        n_iter: int,
        gll: float,
        changes: Changes | None,
        seconds: float,
        update: str,
        force: bool = False,
    ) -> None:
        """One line; ``update`` says how the random part was last updated ("EM", "optimum"
        when it was moved to its ML / REML optimum, "lmer" out of the box)."""
        if self.level <= 0 or not (force or self.level >= 2 or step <= 10 or step % 10 == 0):
            return
        gc, pc, fc = (
            (f"{changes.gll:11.3e}", f"{changes.params:13.3e}", f"{changes.fitted:14.3e}")
            if changes is not None
            else (f"{'':11}", f"{'':13}", f"{'':14}")
        )
        self._print(f"{step:5d} {n_iter:5d} {gll:15.6f} {gc} {pc} {fc} {seconds:8.1f}s  {update}")

    def end(self, text: str) -> None:
        if self.level > 0:
            self._print(text)
