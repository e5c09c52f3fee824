"""The parametric bootstrap likelihood-ratio test of two nested models: pbkrtest's ``PBmodcomp``.

Both models are fitted by ML (REML fits are refitted, as pbkrtest does).  The observed statistic
is the likelihood ratio

    t_obs = 2 (logLik(large) - logLik(small)),  df = npar(large) - npar(small),

with the chi-square p-value P(chi^2_df > t_obs) beside the bootstrap one.  The reference
distribution of t under the small model comes from ``nsim`` responses simulated from the small
ML fit, to each of which both models are refitted: t*_1, ..., t*_nsim.  As pbkrtest, only the
positive t* are used (a statistic that is 0 up to rounding says nothing about the tail), and

    p_PB = (1 + #{t*_i > t_obs}) / (1 + #{t*_i > 0}),

the tail probability with the observed statistic counted as one of the draws (so p_PB > 0).
The standard error of p_PB as an estimate of the exact bootstrap p-value is about
sqrt(p (1 - p) / nsim).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError, require_bool, require_count
from ..results.html import html_table
from ..results.rformat import SIGNIF_LEGEND, format_pval, format_real, print_matrix, signif_stars
from .bootstrap import REFIT_CONTROL, map_refits
from .lrt import _different_data


class PBModComp:
    """The result of :func:`pbmodcomp`: the chi-square LRT and the parametric bootstrap test.

    ``stat``, ``df``, ``p_chisq``, ``p_pb``; ``ref``: the bootstrap statistics (NaN for a
    failed refit); ``nsim``, ``npos`` (positive statistics, the ones used), ``n_extreme``
    (those above ``stat``), ``failed`` (refits that failed), ``seconds``.  It prints as
    pbkrtest prints ``PBmodcomp``; :meth:`to_frame` is pbkrtest's ``as.data.frame``."""

    def __init__(
        self,
        stat: float,
        df: int,
        ref,
        large_formula: str,
        small_formula: str,
        seconds: float,
        data_name: str = "data",
    ) -> None:
        self.stat, self.df = float(stat), int(df)
        self.ref = np.asarray(ref, dtype=float)
        self.large_formula, self.small_formula = large_formula, small_formula
        self.seconds, self.data_name = float(seconds), data_name
        positive = self.ref[np.isfinite(self.ref) & (self.ref > 0)]
        self.nsim, self.npos = self.ref.size, positive.size
        self.n_extreme = int(np.sum(positive > self.stat))
        self.failed = int(np.sum(~np.isfinite(self.ref)))
        self.p_chisq = float(stats.chi2.sf(self.stat, self.df))
        self.p_pb = (1 + self.n_extreme) / (1 + self.npos)

    def to_frame(self) -> pd.DataFrame:
        """Rows LRT and PBtest; columns stat, df (NaN for the bootstrap) and p.value."""
        return pd.DataFrame(
            {"stat": [self.stat, self.stat], "df": [self.df, np.nan], "p.value": [self.p_chisq, self.p_pb]},
            index=["LRT", "PBtest"],
        )

    def _header(self) -> str:
        """pbkrtest's lines above the table (its .PBcommon)."""
        out = f"Bootstrap test; time: {self.seconds:.2f} sec; samples: {self.nsim}; extremes: {self.n_extreme};\n"
        if self.npos < self.nsim:
            out += f"Requested samples: {self.nsim} Used samples: {self.npos} Extremes: {self.n_extreme}\n"
        if self.failed:
            out += f"({self.failed} of the refits failed and are not used)\n"
        return out + f"large : {self.large_formula}\nsmall : {self.small_formula}\n"

    def _table(self) -> tuple:
        """printCoefmat(tab, tst.ind = 1, na.print = "", has.Pvalue = TRUE): the statistic
        rounded to 4 decimals and shown at 5 digits, df at 5 digits, format.pval at 4, stars."""
        st = format_real(np.round([self.stat, self.stat], 4), 5)
        p = [self.p_chisq, self.p_pb]
        rows = [[st[0], format_real([self.df], 5)[0], ""], [st[1], "", ""]]
        for row, txt in zip(rows, format_pval(p, 4)):
            row[2] = txt
        stars = min(p) < 0.1
        if stars:
            for row, s in zip(rows, signif_stars(p)):
                row.append(s)
        return rows, stars

    def __str__(self) -> str:
        rows, stars = self._table()
        header = ["stat", "df", "p.value"] + ([""] if stars else [])
        out = self._header() + print_matrix(rows, ["LRT", "PBtest"], header, right=True) + "\n"
        return out + (SIGNIF_LEGEND + "\n" if stars else "")

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html_table(self._header().splitlines(), self.to_frame())


class _LikelihoodRatio:
    """2 (logLik(large) - logLik(small)) of both models refitted to a response (NaN on failure)."""

    def __init__(self, large, small):
        self.large, self.small = large, small

    def __call__(self, y) -> float:
        try:
            lg = self.large.refit(y, control=REFIT_CONTROL)
            sm = self.small.refit(y, control=REFIT_CONTROL)
            return 2.0 * (lg.loglik - sm.loglik)
        except Exception:  # noqa: BLE001 - a failed refit is dropped, and counted
            return np.nan


def pbmodcomp(
    large,
    small,
    nsim: int = 1000,
    seed: int | np.random.Generator | None = None,
    n_jobs: int = 1,
    progress: bool = True,
) -> PBModComp:
    """Parametric bootstrap likelihood-ratio test of ``small`` within ``large`` (pbkrtest's
    ``PBmodcomp``), with the chi-square test beside it.

    Both models are refitted by ML if they were fitted by REML; ``nsim`` responses are simulated
    from the small model (``seed``: an int or a numpy Generator, for reproducible draws), both
    models are refitted to each (``n_jobs`` worker processes), and the bootstrap p-value is
    (1 + #{t* > t_obs}) / (1 + #{t* > 0}).  ``progress``: one updating line on stderr."""
    nsim, n_jobs = require_count("nsim", nsim), require_count("n_jobs", n_jobs)
    progress = require_bool("progress", progress)
    for name, f in (("large", large), ("small", small)):
        if not hasattr(f, "design") or not hasattr(f, "refit"):
            raise LmmError(f"pbmodcomp() compares models fitted by lmer; {name} is a {type(f).__name__}")
    if large.nobs != small.nobs:
        raise LmmError(
            f"the models were fitted to different numbers of observations ({large.nobs} and {small.nobs}); "
            "a likelihood-ratio test compares models of the same rows"
        )
    problem = _different_data(large, small)
    if problem:
        raise LmmError(f"large and small were not fitted to the same data ({problem})")
    if large.npar <= small.npar:
        raise LmmError(
            f"large has {large.npar} parameters and small {small.npar}: the large model must have more "
            "(pbmodcomp(large, small) tests small within large)"
        )
    start = time.perf_counter()
    large = large.refit(large.design.y, REML=False) if large.REML else large
    small = small.refit(small.design.y, REML=False) if small.REML else small
    stat = 2.0 * (large.loglik - small.loglik)
    sims = small.simulate(nsim, seed=seed).to_numpy().T
    ref = map_refits(_LikelihoodRatio(large, small), sims, large, n_jobs=n_jobs, progress=progress, label="pbmodcomp")
    return PBModComp(
        stat,
        large.npar - small.npar,
        ref,
        large.formula,
        small.formula,
        time.perf_counter() - start,
        data_name=large.data_name,
    )
