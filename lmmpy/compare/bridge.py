"""lmmpy beside statsmodels' MixedLM: one lme4 formula, both fits, one table.

MixedLM has one grouping factor (``groups``) with correlated random effects (``re_formula``)
and, within it, independent variance components (``vc_formula``: each a set of columns
sharing one variance).  An lme4 formula translates when

- all terms share one grouping factor g: the first term -> ``re_formula``, every further
  term must be a single column, ``(0 + x | g)`` -> vc ``0 + x`` (what ``||`` produces);
- the other factors are nested in one factor g (each of their levels inside one level of g),
  with random intercepts: ``(1 | h)`` -> vc ``0 + C(h)``;
- the factors are crossed, all with random intercepts: one group holding all rows, each
  factor a vc ``0 + C(a)`` (dense in MixedLM: refused above ``max_crossed_columns``).

Anything else (crossed factors with slopes, for example) raises an error saying why.  Both
criteria are on lme4's scale (-2 log-likelihood, REML or ML; MixedLM's ``llf`` is on it), and
lmmpy also evaluates its own criterion at MixedLM's estimates, so "statsmodels stopped at a
worse optimum" is a statement about one function.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import LmmError
from ..fit.em import psd_lower_factor, theta_from_templates
from ..formula.design import ReTerm, to_formulaic
from ..formula.parser import deparse, parse
from ..results.html import html_table
from ..lmer import lmer
from ..lmerfit import LmerFit


@dataclass
class Translation:
    groups: str  # a column of grouping labels (see group_columns), or "__one__": all rows
    re_formula: str
    vc_formula: dict  # name -> formula
    term_kinds: list  # per lmmpy term (lme4 order): ("re", None) or ("vc", name)


def _col(group: str) -> str:
    """The data column holding a grouping factor's labels (``a:b`` included)."""
    return "__" + "".join(c if c.isalnum() else "_" for c in group) + "__"


def group_columns(fit: LmerFit) -> pd.DataFrame:
    """The grouping factors' level labels, one column per factor, as lmmpy coded them."""
    out = pd.DataFrame(index=range(fit.design.n))
    for t in fit.design.reterms:
        out[_col(t.group)] = np.asarray(t.levels, dtype=object)[t.codes]
    return out


def _nested_in(data: pd.DataFrame, inner: str, outer: str) -> bool:
    return bool((data.groupby(_col(inner), observed=True)[_col(outer)].nunique() <= 1).all())


def translate(fit: LmerFit, max_crossed_columns: int = 2000) -> Translation:
    """How MixedLM expresses the fitted model's random effects, or an LmmError saying why not."""
    terms = fit.design.reterms
    frame = group_columns(fit)
    groups = [t.group for t in terms]
    names = list(dict.fromkeys(groups))
    intercept_only = [t.cnames == ["(Intercept)"] for t in terms]

    def rhs(t: ReTerm) -> str:
        text = to_formulaic(parse(t.lhs))
        if "(Intercept)" in t.cnames or text.replace(" ", "").startswith(("0+", "-1+")):
            return text
        return f"0 + {text}"

    if len(names) == 1:
        g = names[0]
        first = (
            terms[0]
            if terms[0].k > 1 or len(terms) == 1
            else next((t for t in terms if "(Intercept)" in t.cnames), terms[0])
        )
        kinds, vc = [], {}
        for t in terms:
            if t is first:
                kinds.append(("re", None))
            elif t.k == 1:
                name = t.cnames[0]
                vc[name] = rhs(t)
                kinds.append(("vc", name))
            else:
                raise LmmError(
                    f"MixedLM cannot express two correlated blocks for {g!r} "
                    f"({', '.join(t.lhs for t in terms)}): it has one covariance matrix per group"
                )
        return Translation(_col(g), rhs(first), vc, kinds)
    outer = [g for g in names if all(h == g or _nested_in(frame, h, g) for h in names)]
    if outer:
        g = outer[0]
        kinds, vc = [], {}
        main = [t for t in terms if t.group == g]
        if len(main) > 1:
            raise LmmError(f"MixedLM: {g!r} has several random-effects terms beside nested factors")
        for t in terms:
            if t.group == g:
                kinds.append(("re", None))
            elif t.cnames == ["(Intercept)"]:
                vc[t.group] = f"0 + C({_col(t.group)})"
                kinds.append(("vc", t.group))
            else:
                raise LmmError(
                    f"MixedLM: the nested factor {t.group!r} has random slopes ({t.lhs}); "
                    "only random intercepts of nested factors translate"
                )
        return Translation(_col(g), rhs(main[0]), vc, kinds)
    if not all(intercept_only):
        slopes = [f"({t.lhs} | {t.group})" for t, io in zip(terms, intercept_only) if not io]
        raise LmmError(
            "MixedLM cannot express crossed grouping factors with random slopes "
            f"({', '.join(slopes)}): crossed factors only go in as variance components "
            "of one all-rows group, which carry a single variance each"
        )
    width = sum(t.nlevels for t in terms)
    if width > max_crossed_columns:
        raise LmmError(
            f"crossed factors with {width} levels in all: MixedLM would hold them as dense "
            f"columns of one group (more than max_crossed_columns={max_crossed_columns})"
        )
    return Translation(
        "__one__", "0", {t.group: f"0 + C({_col(t.group)})" for t in terms}, [("vc", t.group) for t in terms]
    )


@dataclass
class Comparison:
    """Side by side: ``table`` (rows: fixed effects, their SEs, variance components,
    residual variance, criterion, seconds; columns lmmpy, statsmodels, difference)."""

    table: pd.DataFrame
    translation: Translation
    criterion_lmmpy: float
    criterion_statsmodels: float  # -2 llf as MixedLM reports it
    criterion_at_statsmodels: float  # lmmpy's criterion at MixedLM's estimates
    tol: float = 1e-3

    @property
    def worse_optimum(self) -> bool:
        """statsmodels stopped where the criterion is higher than lmmpy's optimum."""
        return self.criterion_at_statsmodels > self.criterion_lmmpy + self.tol

    def __str__(self) -> str:
        with pd.option_context("display.float_format", "{:.6g}".format, "display.width", 120):
            text = self.table.to_string()
        t = self.translation
        head = (
            f"lmmpy vs statsmodels MixedLM (groups={t.groups.strip('_')!r}, re_formula={t.re_formula!r}, "
            f"vc_formula={t.vc_formula})\n"
        )
        flag = (
            "\nstatsmodels stopped at a worse optimum: criterion "
            f"{self.criterion_at_statsmodels:.2f} against lmmpy's {self.criterion_lmmpy:.2f}\n"
            if self.worse_optimum
            else "\n"
        )
        return head + text + flag

    def _repr_html_(self) -> str:
        head, *rest = str(self).splitlines()
        flag = [line for line in rest if line.startswith("statsmodels stopped")]
        return html_table([head, *flag], self.table)


def compare_fit(fit: LmerFit, max_crossed_columns: int = 2000, **fit_kwargs: Any) -> Comparison:
    """Fit the model of ``fit`` with MixedLM and put both side by side."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    tr = translate(fit, max_crossed_columns)
    design = fit.design
    if design.weights is not None or design.offset is not None:
        raise LmmError("MixedLM has no prior weights or offsets: the comparison needs a model without them")
    data = pd.concat([design.frame.reset_index(drop=True), group_columns(fit)], axis=1)
    data["__one__"] = 1
    fixed = to_formulaic(design.formula.fixed) if design.formula.fixed is not None else "1"
    formula = f"{deparse(design.formula.response)} ~ {fixed}"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md = MixedLM.from_formula(
            formula, data, groups=tr.groups, re_formula=tr.re_formula, vc_formula=tr.vc_formula or None
        )
        res = md.fit(reml=fit.REML, **fit_kwargs)
    seconds = time.perf_counter() - t0

    # MixedLM's covariances per lmmpy term, then lmmpy's criterion at them
    sigma2 = float(res.scale)
    vc_names = list(md.exog_vc.names) if tr.vc_formula else []
    covs = []
    for t, (kind, name) in zip(design.reterms, tr.term_kinds):
        if kind == "re":
            covs.append(np.asarray(res.cov_re, float))
        else:
            covs.append(np.array([[float(res.vcomp[vc_names.index(name)])]]))
    theta = np.maximum(theta_from_templates([psd_lower_factor(S / sigma2) for S in covs]), fit.model.lower)
    at_sm = fit.model.criterion(theta)

    rows = {}
    fe, se = res.fe_params, res.bse_fe
    for i, nm in enumerate(design.xnames):
        rows[nm] = (fit.fixef.iloc[i], fe.iloc[i])
    for i, nm in enumerate(design.xnames):
        rows[f"SE {nm}"] = (fit.se.iloc[i], se.iloc[i])
    for t, S_l, S_s in zip(design.reterms, fit.covariances, covs):
        for a in range(t.k):
            for b in range(a + 1):
                label = f"var {t.group} {t.cnames[a]}" if a == b else f"cov {t.group} {t.cnames[b]}.{t.cnames[a]}"
                rows[label] = (S_l[a, b], S_s[a, b])
    rows["var Residual"] = (fit.sigma**2, sigma2)
    crit = "REML criterion" if fit.REML else "deviance"
    rows[f"{crit} (-2 logLik)"] = (fit.objective, -2 * float(res.llf))
    rows[f"{crit} at the estimates (lmmpy)"] = (fit.objective, at_sm)
    rows["seconds"] = (fit.optsum.seconds, seconds)
    table = pd.DataFrame(rows, index=["lmmpy", "statsmodels"]).T
    table["difference"] = table["statsmodels"] - table["lmmpy"]
    return Comparison(table, tr, fit.objective, -2 * float(res.llf), at_sm)


def statsmodels(
    formula: str, data: pd.DataFrame, REML: bool = True, max_crossed_columns: int = 2000, **kwargs: Any
) -> Comparison:
    """Fit ``formula`` with lmmpy and with statsmodels' MixedLM (where MixedLM can express it)
    and return the side-by-side :class:`Comparison`."""
    fit = lmer(formula, data, REML=REML)
    return compare_fit(fit, max_crossed_columns, **kwargs)
