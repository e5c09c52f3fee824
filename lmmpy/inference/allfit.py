"""A fit refitted with every optimizer lmmpy has: lme4's ``summary(allFit(fit))``.

Each optimizer of :data:`lmmpy.fit.optimize.OPTIMIZERS` (L-BFGS-B with the analytic gradient,
projected BFGS, COBYQA, Nelder-Mead, Powell) and the EM algorithm refits the model from lme4's
start (1 on the diagonals of theta, 0 elsewhere), as allFit does; the table holds each refit's
criterion (log-likelihood), fixed effects, standard deviations and correlations (lme4's
``sdcor``: per term the sd_x|g, then the cor_x.y|g; then sigma), theta, time and evaluations, and which
converged.  Optimizers that agree to a few digits are the evidence allFit is for: the optimum
is the optimum, not one optimizer's stopping point.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from ..errors import LmmError
from ..fit.optimize import OPTIMIZERS
from ..results.html import html_table
from ..results.rformat import format_real, print_matrix, print_named
from .parameters import parameter_vector

EM = "EM"  # the row of method="em"
ALL = list(OPTIMIZERS.values()) + [EM]


class AllFit:
    """The refits of :func:`allfit`, one row per optimizer (lme4's ``summary(allFit(fit))``):

    ``which_ok`` (the refit ran), ``converged`` (the optimizer converged and no check failed),
    ``msgs`` (the checks' messages, lme4's words), ``llik``, ``fixef``, ``sdcor``, ``theta``,
    ``times`` (seconds), ``feval`` (criterion evaluations).  It prints as R prints that
    summary; :meth:`to_frame` is one table of all of it."""

    def __init__(self, rows: dict, fixef_names: list, sdcor_names: list, theta_size: int) -> None:
        self.rows = rows  # optimizer -> dict(ok, converged, msgs, llik, fixef, sdcor, theta, seconds, feval)
        names = list(rows)
        nan = {"fixef": len(fixef_names), "sdcor": len(sdcor_names), "theta": theta_size}

        def stack(key, columns):
            return pd.DataFrame(
                [rows[n][key] if rows[n]["ok"] else np.full(nan[key], np.nan) for n in names],
                index=names,
                columns=columns,
            )

        self.which_ok = pd.Series({n: rows[n]["ok"] for n in names}, name="which.OK")
        self.converged = pd.Series({n: rows[n]["converged"] for n in names}, name="converged")
        self.msgs = {n: list(rows[n]["msgs"]) for n in names}
        self.llik = pd.Series({n: rows[n]["llik"] for n in names}, name="llik", dtype=float)
        self.fixef = stack("fixef", fixef_names)
        self.sdcor = stack("sdcor", sdcor_names)
        self.theta = stack("theta", [f"theta{i + 1}" for i in range(theta_size)])
        self.times = pd.Series({n: rows[n]["seconds"] for n in names}, name="seconds", dtype=float)
        self.feval = pd.Series({n: rows[n]["feval"] for n in names}, name="feval", dtype=float)

    def to_frame(self) -> pd.DataFrame:
        """One row per optimizer: which.OK, converged, llik, the fixed effects, sdcor, seconds,
        feval and the messages joined by "; "."""
        out = pd.concat([self.which_ok, self.converged, self.llik, self.fixef, self.sdcor], axis=1)
        out["seconds"] = self.times
        out["feval"] = self.feval
        out["msgs"] = pd.Series({n: "; ".join(m) for n, m in self.msgs.items()})
        return out

    @staticmethod
    def _matrix(frame: pd.DataFrame) -> str:
        """R's print of a numeric matrix: each column formatted on its own at 7 digits."""
        cols = [format_real(frame[c].to_numpy(dtype=float), 7) for c in frame.columns]
        cells = [[col[i] for col in cols] for i in range(len(frame))]
        return print_matrix(cells, list(frame.index), list(frame.columns), right=True)

    def __str__(self) -> str:
        names = list(self.which_ok.index)
        msgs = "\n".join(
            f"$msgs${n}\n" + ("\n".join(f'[1] "{m}"' for m in self.msgs[n]) or "NULL") + "\n" for n in names
        )
        parts = [
            "$which.OK\n" + print_named(names, ["TRUE" if v else "FALSE" for v in self.which_ok]),
            "$converged\n" + print_named(names, ["TRUE" if v else "FALSE" for v in self.converged]),
            msgs.rstrip("\n"),
            "$fixef\n" + self._matrix(self.fixef),
            "$llik\n" + print_named(names, format_real(self.llik.to_numpy(), 7)),
            "$sdcor\n" + self._matrix(self.sdcor),
            "$theta\n" + self._matrix(self.theta),
            "$times\n" + print_named(names, format_real(self.times.to_numpy(), 3)),
            "$feval\n" + print_named(names, format_real(self.feval.to_numpy(), 7)),
        ]
        return "\n\n".join(parts) + "\n"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html_table(["allfit: the model refitted with every optimizer, each from lme4's start"], self.to_frame())


def sdcor_order(fit) -> list:
    """The variance parameters in the order of lme4's ``as.data.frame(VarCorr(fit))`` (which
    allFit's ``sdcor`` follows): per term the standard deviations, then the correlations of
    the lower triangle column by column; then sigma.  Names as :func:`ran_par_names`
    (lme4's oldNames = FALSE)."""
    out = []
    for t in fit.design.reterms:
        cn, g = t.cnames, t.group
        out += [f"sd_{cn[i]}|{g}" for i in range(t.k)]
        out += [f"cor_{cn[i]}.{cn[j]}|{g}" for j in range(t.k) for i in range(j + 1, t.k)]
    return out + ["sigma"]


def allfit(fit, optimizers: str | list | None = None) -> AllFit:
    """Refit ``fit`` with every optimizer (or those named in ``optimizers``: "L-BFGS-B",
    "BFGS", "COBYQA", "Nelder-Mead", "Powell", "EM", any case), each from lme4's start, as
    lme4's ``allFit``; the table of criteria, estimates, times and convergence is
    :class:`AllFit`.  A refit that fails with an error is recorded (``which_ok`` False, its
    message in ``msgs``), not raised."""
    if not hasattr(fit, "refit") or not hasattr(fit, "design"):
        raise LmmError(f"allfit() refits a model fitted by lmer, not a {type(fit).__name__}")
    known = {n.lower(): n for n in ALL}
    if optimizers is None:
        chosen = ALL
    else:
        if isinstance(optimizers, str):
            optimizers = [optimizers]
        try:
            chosen = [known[str(o).lower()] for o in optimizers]
        except KeyError as e:
            raise LmmError(f"allfit(optimizers=...): unknown optimizer {e.args[0]!r}; use {', '.join(ALL)}") from None
        if not chosen:
            raise LmmError("allfit(optimizers=...) names no optimizer")
    key = {v: k for k, v in OPTIMIZERS.items()}
    fixef_names = list(fit.fixef.index)
    sdcor_names = sdcor_order(fit)
    rows = {}
    for name in chosen:
        how = {"method": "em"} if name == EM else {"optimizer": key[name]}
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the refit's findings are recorded in msgs
                f = fit.refit(fit.design.y, start=None, **how)
        except LmmError as e:
            rows[name] = dict(ok=False, converged=False, msgs=[str(e)], llik=np.nan, seconds=time.perf_counter() - t0)
            rows[name].update(fixef=None, sdcor=None, theta=None, feval=np.nan)
            continue
        seconds = time.perf_counter() - t0
        opt = f.optsum
        pv = parameter_vector(f)[sdcor_names].to_numpy()
        rows[name] = dict(
            ok=True,
            converged=bool(opt.converged and not opt.failed),
            msgs=list(opt.messages) + ([] if opt.converged else [opt.message]),
            llik=f.loglik,
            fixef=f.fixef.to_numpy(),
            sdcor=pv,
            theta=np.asarray(f.theta, dtype=float),
            seconds=seconds,
            feval=opt.n_evals,
        )
    return AllFit(rows, fixef_names, sdcor_names, fit.theta.size)
