"""Likelihood-ratio tests between nested models: lme4's ``anova(m0, m1, ...)``.

For models ordered by their number of parameters, each against the one before:
Chisq = max(0, deviance_{i-1} - deviance_i) on Df = npar_i - npar_{i-1} degrees of freedom,
Pr(>Chisq) = P(chi^2_Df > Chisq); the deviance is -2 logLik of an ML fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError, require_bool
from ..results.html import html_table
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
        head = f"Data: {self.data_name}\nModels:\n" + "".join(f"{m}: {f}\n" for m, f in zip(tab.index, tab["formula"]))
        out = head + print_matrix(rows, list(tab.index), header, right=True) + "\n"
        return out + (SIGNIF_LEGEND + "\n" if stars else "")

    def __repr__(self):
        return str(self)

    def _repr_html_(self) -> str:
        models = [f"{m}: {f}" for m, f in zip(self.table.index, self.table["formula"])]
        return html_table([f"Data: {self.data_name}", "Models:", *models], self.table.drop(columns="formula"))


def anova(*fits: Any, refit: bool = True) -> LRTResult:
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
        raise LmmError(
            f"the models were not all fitted to the same size of dataset: {sorted(n)} observations "
            "(lme4 stops here too); fit them to the same rows"
        )
    for i, f in enumerate(fits[1:], start=1):
        problem = _different_data(fits[0], f)
        if problem:
            raise LmmError(
                f"models m0 and m{i} were not fitted to the same data ({problem}); a likelihood-ratio "
                "test compares models of the same observations (lme4: all models must be fit to the "
                "same data object)"
            )
    if refit and any(f.REML for f in fits):
        fits = tuple((f.refit_ml() if f.REML else f) for f in fits)
    names = [f"m{i}" for i in range(len(fits))]
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)
    rows = []
    prev = None
    for i in order:
        f = fits[i]
        dev = -2.0 * f.loglik
        row = dict(
            model=names[i],
            formula=f.formula,
            npar=f.npar,
            AIC=f.aic,
            BIC=f.bic,
            logLik=f.loglik,
            deviance=dev,
            Chisq=np.nan,
            Df=np.nan,
            **{"Pr(>Chisq)": np.nan},
        )
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
    fa, fb = (getattr(f.design, "fingerprint", None) for f in (a, b))
    if fa is not None or fb is not None:  # data held in partitions: their (n, sum y, sum y^2)
        if fa is None or fb is None:
            return "one was fitted to Dask data, the other to a pandas DataFrame"
        return "" if fa == fb else "different rows or responses (n, sum and sum of squares of y differ)"
    ia, ib = a.design.row_index, b.design.row_index
    ya, yb = np.asarray(a.design.y), np.asarray(b.design.y)
    if ia is not None and ib is not None and ia.is_unique and ib.is_unique and not ia.equals(ib):
        if len(ia) != len(ib) or not ia.isin(ib).all():
            return "different rows of the data"
        yb = pd.Series(yb, index=ib).reindex(ia).to_numpy()  # the same rows in another order
    if not np.array_equal(ya, yb):
        return f"the responses differ at {int(np.sum(ya != yb))} of {ya.size} observations"
    return ""
