"""``summary()`` of a glmer fit, printed as lme4 prints ``summary(glmer(...))``: the method title
(Laplace or adaptive Gauss-Hermite), the family and link, formula, AIC BIC logLik deviance
df.resid (the deviance column is -2 logLik), scaled (Pearson) residuals, random effects
(no Residual row without a dispersion), fixed effects with z values, Pr(>|z|) and stars, and
their correlations; lme4's optimizer messages last.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from ..formula.parser import deparse_lines
from .rformat import SIGNIF_LEGEND, format_pval, format_real, print_matrix, signif_stars
from .summary import DIGITS, Summary, re_groups, random_effects_text

WIDTH = 80  # getOption("width")


@dataclass
class GlmmSummary(Summary):
    family: str = "binomial"
    link: str = "logit"
    nAGQ: int = 1
    residual_sd: Optional[float] = None  # the Residual row's sigma (families with a dispersion), else None

    @classmethod
    def from_fit(cls, fit, ddf=None) -> "GlmmSummary":
        V = fit.vcov.to_numpy()
        sd = np.sqrt(np.diag(V))
        coefs = pd.DataFrame(
            {"Estimate": fit.fixef, "Std. Error": fit.se, "z value": fit.zvalues, "Pr(>|z|)": fit.pvalues}
        )
        opt = fit.optsum
        messages = []
        if opt.messages or not opt.converged or fit.vcov_warning:
            status = "(OK)" if opt.converged else f"({opt.message})"
            messages = [f"optimizer ({opt.optimizer}) convergence code: {opt.return_code} {status}", *opt.messages]
        aictab = {
            "AIC": fit.aic,
            "BIC": fit.bic,
            "logLik": fit.loglik,
            "deviance": -2.0 * fit.loglik,
            "df.resid": fit.df_resid,
        }
        return cls(
            REML=False,
            formula_lines=deparse_lines(fit.design.formula.tree),
            data_name=fit.data_name,
            criterion=fit.objective,
            aictab=aictab,
            resid_quantiles=np.quantile(fit.residuals("pearson", scaled=True).to_numpy(), [0, 0.25, 0.5, 0.75, 1]),
            re_groups=re_groups(fit.design.reterms, fit.covariances),
            sigma=fit.sigma,
            nobs=fit.nobs,
            ngrps=fit.ngrps,
            coefficients=coefs,
            corr_fixef=pd.DataFrame(V / np.outer(sd, sd), index=fit.design.xnames, columns=fit.design.xnames),
            optimizer=opt.optimizer,
            messages=messages,
            icc=None,
            n_dropped=fit.n_dropped,
            dropped_columns=list(fit.design.dropped_columns),
            weights_name=fit.design.weights_name,
            offset_name=fit.design.offset_name,
            family=fit.family.family,
            link=fit.family.link_name,
            nAGQ=fit.nAGQ,
            residual_sd=fit._residual_sd,
        )

    def _title(self):
        how = "Laplace Approximation" if self.nAGQ <= 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nAGQ}"
        title = f"Generalized linear mixed model fit by maximum likelihood ({how})"
        cls = "glmerMod"
        if len(title) + len(cls) > WIDTH:  # lme4's .prt.methTit: strwrap(width - 2, exdent 2)
            lines = textwrap.wrap(f"{title} [{cls}]", width=WIDTH - 3, subsequent_indent="  ", break_on_hyphens=False)
            return "\n".join(lines) + "\n"
        return f"{title} ['{cls}']\n"

    def _call(self):
        return f" Family: {self.family}  ( {self.link} )\n" + super()._call()

    def _criterion(self):
        was, self.REML = self.REML, False
        try:
            return super()._criterion()
        finally:
            self.REML = was

    def _random(self):
        return random_effects_text(self.re_groups, self.residual_sd)

    def _fixed(self):
        cf = self.coefficients
        if cf.empty:
            return ""
        es = self._format_coefs(cf[["Estimate", "Std. Error"]].to_numpy())
        zv = format_real(np.round(cf["z value"].to_numpy(), DIGITS - 1), DIGITS)
        pv = cf["Pr(>|z|)"].to_numpy()
        ps = format_pval(pv, DIGITS - 1)
        stars = signif_stars(pv) if np.any(pv < 0.1) else None
        cells = [[es[i, 0], es[i, 1], zv[i], ps[i]] + ([stars[i]] if stars else []) for i in range(len(cf))]
        header = ["Estimate", "Std. Error", "z value", "Pr(>|z|)"] + ([""] if stars else [])
        out = "\nFixed effects:\n" + print_matrix(cells, list(cf.index), header, right=True) + "\n"
        return out + (SIGNIF_LEGEND + "\n" if stars else "")
