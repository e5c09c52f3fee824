"""Likelihood-ratio tests between models, Wald intervals, and broom.mixed-style tables."""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError, require_bool, require_count, require_level
from ..results.rformat import SIGNIF_LEGEND, format_pval, format_real, print_matrix, signif_stars


class LRTResult:
    """The likelihood-ratio table of :func:`anova`: one row per model (m0, m1, ...) with
    formula, npar, AIC, BIC, logLik, deviance, Chisq, Df and Pr(>Chisq).

    It prints as lme4 prints ``anova(m0, m1, ...)``; :meth:`to_frame` gives the table, and
    indexing (``result["Chisq"]``, ``.loc``, ``.iloc``, ``.columns``, ``.index``) reads it."""

    def __init__(self, table: pd.DataFrame, data_name: str):
        self.table = table
        self.data_name = data_name

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame (a copy)."""
        return self.table.copy()

    def __getitem__(self, key):
        return self.table[key]

    def __len__(self) -> int:
        return len(self.table)

    @property
    def loc(self):
        return self.table.loc

    @property
    def iloc(self):
        return self.table.iloc

    @property
    def columns(self) -> pd.Index:
        return self.table.columns

    @property
    def index(self) -> pd.Index:
        return self.table.index

    def __str__(self):
        digits = 5  # print.anova: max(getOption("digits") - 2, 3)
        tab = self.table
        cols = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
        cells = {c: [""] * len(tab) for c in cols}
        for c in ("npar", "AIC", "BIC", "logLik", "deviance", "Df"):
            v = tab[c].to_numpy(dtype=float)
            ok = np.isfinite(v)
            if ok.any():
                for i, txt in zip(np.flatnonzero(ok), format_real(v[ok], digits)):
                    cells[c][i] = txt
        chisq = tab["Chisq"].to_numpy(dtype=float)
        ok = np.isfinite(chisq)
        if ok.any():
            for i, txt in zip(np.flatnonzero(ok), format_real(np.round(chisq[ok], digits - 1), digits)):
                cells["Chisq"][i] = txt
        pv = tab["Pr(>Chisq)"].to_numpy(dtype=float)
        okp = np.isfinite(pv)
        stars = None
        if okp.any():
            for i, txt in zip(np.flatnonzero(okp), format_pval(pv[okp], digits - 1)):
                cells["Pr(>Chisq)"][i] = txt
            if np.any(pv[okp] < 0.1):
                st = signif_stars(pv[okp])
                stars = [""] * len(tab)
                for i, txt in zip(np.flatnonzero(okp), st):
                    stars[i] = txt
                w = max(map(len, st))
                stars = [x.ljust(w) for x in stars]
        header = cols + ([""] if stars else [])
        rows = [[cells[c][i] for c in cols] + ([stars[i]] if stars else []) for i in range(len(tab))]
        head = f"Data: {self.data_name}\nModels:\n" + "".join(
            f"{m}: {f}\n" for m, f in zip(tab.index, tab["formula"]))
        out = head + print_matrix(rows, list(tab.index), header, right=True) + "\n"
        return out + (SIGNIF_LEGEND + "\n" if stars else "")

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        return self.table.to_html()


def anova(*fits, refit: bool = True) -> LRTResult:
    """lme4's ``anova(m0, m1, ...)``: models ordered by their number of parameters, with
    npar, AIC, BIC, logLik, deviance and the likelihood-ratio Chisq, Df and Pr(>Chisq) of each
    against the one before.  REML fits are refitted by ML first (as lme4 does, ``refit=False``
    keeps them), since REML criteria of models with different fixed effects are not comparable."""
    if len(fits) < 2:
        raise LmmError("anova() compares two or more fitted models")
    refit = require_bool("refit", refit)
    for i, f in enumerate(fits):
        if not hasattr(f, "design") or not hasattr(f, "loglik"):
            raise LmmError(f"anova() compares models fitted by lmer; argument {i + 1} is a {type(f).__name__}")
    n = {f.nobs for f in fits}
    if len(n) > 1:
        raise LmmError(f"the models were not all fitted to the same size of dataset: {sorted(n)} observations "
                       "(lme4 stops here too); fit them to the same rows")
    for i, f in enumerate(fits[1:], start=1):
        problem = _different_data(fits[0], f)
        if problem:
            raise LmmError(f"models m0 and m{i} were not fitted to the same data ({problem}); a likelihood-ratio "
                           "test compares models of the same observations (lme4: all models must be fit to the "
                           "same data object)")
    if refit and any(f.REML for f in fits):
        fits = [(f.refit(f.design.y, REML=False) if f.REML else f) for f in fits]
    names = [f"m{i}" for i in range(len(fits))]
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)
    rows = []
    prev = None
    for i in order:
        f = fits[i]
        dev = -2.0 * f.loglik
        row = dict(model=names[i], formula=f.formula, npar=f.npar, AIC=f.aic, BIC=f.bic, logLik=f.loglik,
                   deviance=dev, Chisq=np.nan, Df=np.nan, **{"Pr(>Chisq)": np.nan})
        if prev is not None:
            chisq = max(0.0, prev["deviance"] - dev)
            df = f.npar - prev["npar"]
            row.update(Chisq=chisq, Df=df, **{"Pr(>Chisq)": stats.chi2.sf(chisq, df) if df > 0 else np.nan})
        rows.append(row)
        prev = row
    table = pd.DataFrame(rows).set_index("model")
    table.index.name = None
    return LRTResult(table, fits[0].data_name)


def _different_data(a, b) -> str:
    """How two fits' observations differ ("" if they do not): the rows used (the data's
    index labels; their order may differ) or the response at those rows."""
    ia, ib = a.design.row_index, b.design.row_index
    ya, yb = np.asarray(a.design.y), np.asarray(b.design.y)
    if ia is not None and ib is not None and ia.is_unique and ib.is_unique and not ia.equals(ib):
        if len(ia) != len(ib) or not ia.isin(ib).all():
            return "different rows of the data"
        yb = pd.Series(yb, index=ib).reindex(ia).to_numpy()  # the same rows in another order
    if not np.array_equal(ya, yb):
        return f"the responses differ at {int(np.sum(ya != yb))} of {ya.size} observations"
    return ""


def confint_wald(fit, level: float = 0.95, old_names: bool = True) -> pd.DataFrame:
    """Wald intervals beta +- z se for the fixed effects; the variance parameters get none
    (NaN), as in lme4's ``confint(method = "Wald")``; names as :func:`ran_par_names`."""
    level = require_level(level)
    z = stats.norm.ppf(0.5 + level / 2)
    pct = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
    names = ran_par_names(fit, old_names=old_names)
    out = pd.DataFrame(np.nan, index=names + list(fit.fixef.index), columns=pct)
    out.loc[fit.fixef.index, pct[0]] = fit.fixef - z * fit.se
    out.loc[fit.fixef.index, pct[1]] = fit.fixef + z * fit.se
    return out


def ran_par_names(fit, old_names: bool = False) -> list:
    """lme4's names of the variance parameters, in lme4's order: with ``old_names`` (lme4's
    oldNames = TRUE, the default of its confint) .sig01, .sig02, ... and .sigma, otherwise
    (oldNames = FALSE) sd_x|g, cor_x.y|g and sigma."""
    if old_names:
        return [f".sig{i + 1:02d}" for i in range(fit.theta.size)] + [".sigma"]
    out = []
    for t in fit.design.reterms:
        for j in range(t.k):
            for i in range(j, t.k):
                out.append(f"sd_{t.cnames[i]}|{t.group}" if i == j
                           else f"cor_{t.cnames[i]}.{t.cnames[j]}|{t.group}")
    return out + ["sigma"]


def tidy(fit, effects: str = "fixed") -> pd.DataFrame:
    """broom.mixed's tidy(): effects "fixed" (estimate, std.error, statistic), "ran_pars"
    (standard deviations and correlations) or "ran_vals" (conditional modes and their SDs)."""
    if effects == "fixed":
        return pd.DataFrame({"effect": "fixed", "term": fit.fixef.index, "estimate": fit.fixef.to_numpy(),
                             "std.error": fit.se.to_numpy(), "statistic": fit.tvalues.to_numpy()})
    if effects == "ran_pars":
        rows = []
        for t, S in zip(fit.design.reterms, fit.covariances):
            sd = np.sqrt(np.diag(S))
            for j in range(t.k):
                for i in range(j, t.k):
                    if i == j:
                        rows.append((t.group, f"sd__{t.cnames[i]}", sd[i]))
                    else:
                        r = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else math.nan
                        rows.append((t.group, f"cor__{t.cnames[j]}.{t.cnames[i]}", r))
        rows.append(("Residual", "sd__Observation", fit.sigma))
        return pd.DataFrame(rows, columns=["group", "term", "estimate"]).assign(effect="ran_pars")[
            ["effect", "group", "term", "estimate"]]
    if effects == "ran_vals":
        frames = []
        for g, df in fit.ranef.items():
            sd = fit.ranef_sd[g]
            long = df.stack().rename("estimate").reset_index()
            long.columns = ["level", "term", "estimate"]
            long["std.error"] = sd.stack().to_numpy()
            long.insert(0, "group", g)
            frames.append(long)
        return pd.concat(frames, ignore_index=True).assign(effect="ran_vals")[
            ["effect", "group", "level", "term", "estimate", "std.error"]]
    raise LmmError(f"effects must be 'fixed', 'ran_pars' or 'ran_vals', not {effects!r}")


def parameter_vector(fit) -> pd.Series:
    """The parameters under lme4's names: sd_x|g, cor_x.y|g per term, sigma, fixed effects."""
    vals = []
    for t, S in zip(fit.design.reterms, fit.covariances):
        sd = np.sqrt(np.diag(S))
        for j in range(t.k):
            for i in range(j, t.k):
                vals.append(sd[i] if i == j else (S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan))
    vals.append(fit.sigma)
    return pd.Series(np.concatenate([vals, fit.fixef.to_numpy()]), index=ran_par_names(fit) + list(fit.fixef.index))


PROGRESS_SECONDS = 5.0  # by default, work projected to take longer than this reports its progress
PROGRESS_INTERVAL = 0.25  # seconds between rewrites of the line


class Progress:
    """One line on stderr, rewritten as long work goes on: ``label: done/total unit (note),
    seconds taken and about how many are left``.  ``on``: True, False, or None to turn it on
    as soon as the time taken so far projects a total above PROGRESS_SECONDS (the first
    estimate comes from the first step's time)."""

    def __init__(self, label: str, total: int, unit: str = "", on=None):
        self.label, self.total, self.unit, self.on = label, total, unit, on
        self.start = time.perf_counter()
        self.last = -np.inf  # when the line was last written
        self.width = 0  # its length then
        self.shown = False

    def update(self, done: float, note: str = ""):
        """``done`` of the total units finished (fractions allowed)."""
        if self.on is False or done <= 0:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        projected = elapsed * self.total / done
        if self.on is None:
            if projected <= PROGRESS_SECONDS:
                return
            self.on = True
        if now - self.last < PROGRESS_INTERVAL and done < self.total:
            return
        line = f"{self.label}: {int(done)}/{self.total}" + (f" {self.unit}" if self.unit else "")
        line += (f" ({note})" if note else "") + f", {elapsed:.1f} s"
        if done < self.total:
            line += f", about {max(0.0, projected - elapsed):.0f} s left"
        print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)
        self.last, self.width, self.shown = now, len(line), True

    def close(self):
        """End the line (if one was written)."""
        if self.shown:
            print(file=sys.stderr, flush=True)
            self.shown = False


def _boot_worker(args):
    fit, ys = args
    out = []
    for y in ys:
        try:
            out.append(parameter_vector(fit.refit(y, control={"check_conv": False})).to_numpy())
        except Exception:  # noqa: BLE001 - a failed refit is dropped, and counted
            out.append(np.full(len(parameter_vector(fit)), np.nan))
    return out


def bootstrap(fit, nsim: int = 500, seed=None, n_jobs: int = 1, progress=None) -> pd.DataFrame:
    """Parametric bootstrap: ``nsim`` responses simulated from the fit, each refitted (from the
    fit's theta); one row of parameters (lme4's names) per simulation.  ``progress``: one
    updating line on stderr (None: if the refits will take more than a few seconds)."""
    import warnings
    nsim, n_jobs = require_count("nsim", nsim), require_count("n_jobs", n_jobs)
    progress = None if progress is None else require_bool("progress", progress)  # None: by the time it takes
    sims = fit.simulate(nsim, seed=seed).to_numpy().T
    chunks = [sims[i:i + 25] for i in range(0, nsim, 25)]
    from ..linalg.threads import blas_threads_for_fit, dense_tail_order, single_blas_thread
    rows = []
    bar = Progress("bootstrap", nsim, "refits", on=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_jobs > 1:
            import multiprocessing as mp
            # one BLAS thread in each worker: the workers are the parallelism
            with mp.get_context("fork").Pool(n_jobs, initializer=single_blas_thread) as pool:
                for part in pool.imap(_boot_worker, [(fit, c) for c in chunks]):
                    rows += part
                    bar.update(len(rows))
        else:
            # the BLAS threads decided once for all the refits, not once per refit
            with blas_threads_for_fit(dense_tail_order(fit.model.sizes, fit.model.p)):
                for c in chunks:
                    rows += _boot_worker((fit, c))
                    bar.update(len(rows))
    bar.close()
    return pd.DataFrame(rows, columns=parameter_vector(fit).index)


def confint_boot(fit, level: float = 0.95, nsim: int = 500, seed=None, n_jobs: int = 1,
                 progress=None, old_names: bool = True) -> pd.DataFrame:
    """Percentile intervals from the parametric bootstrap; names as :func:`ran_par_names`."""
    level = require_level(level)
    draws = bootstrap(fit, nsim, seed, n_jobs, progress)
    a = (1 - level) / 2
    out = draws.quantile([a, 1 - a]).T
    out.index = ran_par_names(fit, old_names=old_names) + list(fit.fixef.index)
    out.columns = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
    out.attrs["failed_refits"] = int(draws.isna().any(axis=1).sum())
    return out
