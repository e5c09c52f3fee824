"""``summary()``: computed as plain data, printed by small printers as lme4 prints it.

The text is lme4's ``print(summary(fit))`` section by section (digits = 4): method title,
formula, criterion, scaled residuals, random effects, numbers of groups, fixed effects,
their correlations (for 1 < p <= 12), optimizer messages -- plus an ICC line after the
numbers of groups, and a line for rows dropped because of missing values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..fit.status import Note
from ..formula.parser import deparse_lines
import textwrap

from .rformat import (
    SIGNIF_LEGEND,
    abbreviate,
    cat_fill,
    format_num,
    format_pval,
    format_real,
    print_matrix,
    print_named,
    signif_stars,
    zapsmall,
)
from .html import html_text
from .varcorr import make_unique, sd_corr

DIGITS = 4  # lme4: max(3, getOption("digits") - 3)
COR_MAX = 12  # getOption("lme4.summary.cor.max")


@dataclass
class Summary:
    REML: bool
    formula_lines: list
    data_name: str
    criterion: float
    aictab: dict  # AIC, BIC, logLik, deviance, df.resid (ML fits)
    resid_quantiles: np.ndarray
    re_groups: list  # (unique group name, column names, sd vector, correlation matrix)
    sigma: float
    nobs: int
    ngrps: dict
    coefficients: pd.DataFrame  # Estimate, Std. Error, t value
    corr_fixef: pd.DataFrame
    optimizer: str
    messages: list = field(default_factory=list)
    icc: pd.Series = None
    n_dropped: int = 0
    dropped_columns: list = field(default_factory=list)
    weights_name: str | None = None
    offset_name: str | None = None
    ddf: str | None = None  # "satterthwaite": lmerTest's title, df and p-value columns
    resid_method: str | None = None  # how the residual quantiles were computed when not exactly (Dask data)

    @classmethod
    def from_fit(cls, fit, ddf=None) -> "Summary":
        re = re_groups(fit.design.reterms, fit.covariances)
        V = fit.vcov.to_numpy()
        sd = np.sqrt(np.diag(V))
        if ddf is None:
            coefs = pd.DataFrame({"Estimate": fit.fixef, "Std. Error": fit.se, "t value": fit.tvalues})
        elif str(ddf).lower() == "satterthwaite":
            coefs = fit.satterthwaite()
            ddf = "satterthwaite"
        elif str(ddf).lower().replace("_", "-") in ("kenward-roger", "kr"):
            coefs = fit.kenward_roger()
            ddf = "kenward-roger"
        else:
            from ..errors import LmmError

            raise LmmError(f"summary(ddf={ddf!r}): use None, 'satterthwaite' or 'kenward-roger'")
        opt = fit.optsum
        messages = []
        fallback = [str(n) for n in opt.fit_notes if n.kind is Note.EM_FALLBACK]  # restarts are not news
        if opt.messages or fallback or not opt.converged:
            status = "(OK)" if opt.converged else f"({opt.message})"
            messages = [
                f"optimizer ({opt.optimizer}) convergence code: {opt.return_code} {status}",
                *opt.messages,
                *fallback,
            ]
        aictab = {
            "AIC": fit.aic,
            "BIC": fit.bic,
            "logLik": fit.loglik,
            "deviance": fit.deviance,
            "df.resid": fit.df_resid,
        }
        resid_quantiles, resid_method = fit.residual_quantiles()
        return cls(
            REML=fit.REML,
            formula_lines=deparse_lines(fit.design.formula.tree),
            data_name=fit.data_name,
            criterion=fit.objective,
            aictab=aictab,
            resid_quantiles=resid_quantiles,
            re_groups=re,
            sigma=fit.sigma,
            nobs=fit.nobs,
            ngrps=fit.ngrps,
            coefficients=coefs,
            corr_fixef=pd.DataFrame(V / np.outer(sd, sd), index=fit.design.xnames, columns=fit.design.xnames),
            optimizer=fit.optsum.optimizer,
            messages=messages,
            icc=fit.icc(),
            n_dropped=fit.n_dropped,
            dropped_columns=list(fit.design.dropped_columns),
            weights_name=fit.design.weights_name,
            offset_name=fit.design.offset_name,
            ddf=ddf,
            resid_method=resid_method,
        )

    # -- text ----------------------------------------------------------------------------------
    def __str__(self) -> str:
        return "".join(
            [
                self._title(),
                self._call(),
                "\n",
                self._criterion(),
                "\n",
                self._residuals(),
                self._random(),
                self._groups(),
                self._icc(),
                self._fixed(),
                self._correlation(),
                self._messages(),
            ]
        )

    def _title(self):
        if self.ddf:  # lmerTest's: strwrap(width 78, exdent 2), then cat(" [", class, "]", sep = "", fill = TRUE)
            method = "REML" if self.REML else "maximum likelihood "
            who = "Satterthwaite's" if self.ddf == "satterthwaite" else "Kenward-Roger's"
            title = f"Linear mixed model fit by {method}. t-tests use {who} method"
            lines = textwrap.wrap(
                title, width=77, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
            )
            return cat_fill([*lines, " [", "lmerModLmerTest", "]"], sep="")
        if self.REML:
            return "Linear mixed model fit by REML ['lmerMod']\n"
        return "Linear mixed model fit by maximum likelihood  ['lmerMod']\n"

    def _call(self):
        out = cat_fill(["Formula:", *self.formula_lines]) + cat_fill(["   Data:", self.data_name])
        if self.weights_name:
            out += cat_fill(["Weights:", self.weights_name])
        if self.offset_name:
            out += cat_fill([" Offset:", self.offset_name])
        return out

    def _criterion(self):
        if self.REML:
            return cat_fill(["REML criterion at convergence:", format_num(round(self.criterion, 1))])
        vals = [round(v, 1) for v in self.aictab.values()]
        strs = format_real(vals, 7)
        strs[-1] = format_num(vals[-1])
        return print_named(list(self.aictab), strs) + "\n"

    def _residuals(self):
        q = zapsmall(self.resid_quantiles, DIGITS + 1)
        method = f"({self.resid_method})\n" if self.resid_method else ""
        return (
            "Scaled residuals: \n"
            + print_named(["Min", "1Q", "Median", "3Q", "Max"], format_real(q, DIGITS))
            + "\n"
            + method
            + "\n"
        )

    def _random(self):
        return random_effects_text(self.re_groups, self.sigma)

    def _groups(self):
        out = cat_fill([f"Number of obs: {self.nobs}, groups: ", "; ".join(f"{g}, {n}" for g, n in self.ngrps.items())])
        if self.n_dropped:
            out += f"  ({self.n_dropped} observation{'s' if self.n_dropped > 1 else ''} deleted due to missingness)\n"
        return out

    def _icc(self):
        if self.icc is None or self.icc.empty:
            return ""
        return "ICC (intercepts): " + "; ".join(f"{g}, {format_num(v, DIGITS)}" for g, v in self.icc.items()) + "\n"

    @staticmethod
    def _format_coefs(values):
        """printCoefmat's estimate columns: rounded to digits - 1 - floor(log10(smallest |x|))
        decimals (at least 1), then formatted together."""
        acs = np.abs(values[np.isfinite(values) & (values != 0)])
        dec = int(max(1, DIGITS - (1 + (np.floor(np.log10(acs.min())) if acs.size else 0))))
        strs = format_real(np.round(values, dec).ravel(order="F"), DIGITS)
        return np.array(strs, dtype=object).reshape(values.shape, order="F")

    def _fixed(self):
        cf = self.coefficients
        if cf.empty:
            return ""
        tv = format_real(np.round(cf["t value"].to_numpy(), DIGITS - 1), DIGITS)
        if not self.ddf:
            es = self._format_coefs(cf[["Estimate", "Std. Error"]].to_numpy())
            cells = [[es[i, 0], es[i, 1], tv[i]] for i in range(len(cf))]
            return "\nFixed effects:\n" + print_matrix(cells, list(cf.index), list(cf.columns), right=True) + "\n"
        # printCoefmat with a p-value column: df formatted with the estimates, format.pval, stars
        es = self._format_coefs(cf[["Estimate", "Std. Error", "df"]].to_numpy())
        pv = cf["Pr(>|t|)"].to_numpy()
        ps = format_pval(pv, DIGITS - 1)
        stars = signif_stars(pv) if np.any(pv < 0.1) else None
        cells = [[es[i, 0], es[i, 1], es[i, 2], tv[i], ps[i]] + ([stars[i]] if stars else []) for i in range(len(cf))]
        header = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"] + ([""] if stars else [])
        out = "\nFixed effects:\n" + print_matrix(cells, list(cf.index), header, right=True) + "\n"
        return out + (SIGNIF_LEGEND + "\n" if stars else "")

    def _correlation(self):
        p = len(self.coefficients)
        if p <= 1 or p > COR_MAX:
            return ""
        rn = list(self.coefficients.index)
        C = self.corr_fixef.to_numpy()
        strs = np.array(format_real(np.round(C, 3).ravel(), 7, nsmall=3), dtype=object).reshape(p, p)
        cells = [[strs[i, j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
        return (
            "\nCorrelation of Fixed Effects:\n"
            + print_matrix(cells, abbreviate(rn, 11)[1:], abbreviate(rn, 6)[:-1])
            + "\n"
        )

    def _messages(self):
        out = "\n".join(self.messages) + "\n" if self.messages else ""
        if self.dropped_columns:
            k = len(self.dropped_columns)
            s = "s" if k > 1 else ""
            out += (
                "fit warnings:\nfixed-effect model matrix is rank deficient so dropping "
                f"{k} column{s} / coefficient{s}\n"
            )
        return out

    # -- html ------------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        return html_text(str(self))


def re_groups(reterms, covariances) -> list:
    """Per term: (unique group name, column names, standard deviations, correlation matrix)."""
    out = []
    for g, t, S in zip(make_unique([t.group for t in reterms]), reterms, covariances):
        sd, corr = sd_corr(S)
        out.append((g, list(t.cnames), sd, corr))
    return out


def random_effects_text(groups, sigma) -> str:
    """lme4's "Random effects:" table: variances, standard deviations, correlations; with
    ``sigma`` None no Residual row (a generalized model without a dispersion)."""
    sds = np.concatenate([sd for _, _, sd, _ in groups] + ([[sigma]] if sigma is not None else []))
    var_s = format_real(sds**2, DIGITS)
    sd_s = format_real(sds, DIGITS)
    rows, names = [], []
    for g, cn, _, _ in groups:
        rows += [g] + [""] * (len(cn) - 1)
        names += cn
    if sigma is not None:
        rows.append("Residual")
        names.append("")
    cells = [[g, nm, v, s] for g, nm, v, s in zip(rows, names, var_s, sd_s)]
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    maxlen = max(len(cn) for _, cn, _, _ in groups)
    if maxlen > 1:
        corr_rows = []
        for _, cn, _, C in groups:
            k = len(cn)
            strs = np.array(format_real(np.round(C, 2).ravel(), DIGITS, nsmall=2), dtype=object).reshape(k, k)
            for i in range(k):
                corr_rows.append([strs[i, j] if j < i else "" for j in range(maxlen - 1)])
        if sigma is not None:
            corr_rows.append([""] * (maxlen - 1))
        cells = [c + r for c, r in zip(cells, corr_rows)]
        header += ["Corr"] + [""] * (maxlen - 2)
    return "Random effects:\n" + print_matrix(cells, [""] * len(cells), header) + "\n"
