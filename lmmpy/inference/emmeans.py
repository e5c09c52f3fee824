r"""Estimated marginal means (R's emmeans) and contrasts among them.

On the reference grid (:mod:`lmmpy.inference.refgrid`: factors at all levels, numeric
covariates at their means), the marginal mean of a cell c of the ``specs`` variables averages
the grid's predictions over the other variables with equal weights:

    emmean_c = l_c' beta-hat,   l_c = mean of the grid rows x_g with g in c,
    SE_c = sqrt(l_c' V l_c),   CI = emmean_c +- t_{df_c, (1 + level)/2} SE_c,

with V and df_c from the ddf method (:mod:`lmmpy.inference.contrast_df`: Satterthwaite's or
Kenward-Roger's df for the 1-df contrast l_c, or df = inf).  A contrast C of the means within a
by-group is the linear function C L beta-hat, with its own SE and df computed the same way,
t = estimate / SE and p values adjusted for the family (:mod:`lmmpy.inference.multiplicity`).
A GLMM's means are on the link scale; ``type="response"`` back-transforms them
(:mod:`lmmpy.inference.response_scale`), and their contrasts under a log or logit link to
ratios or odds ratios (:class:`EmmContrasts`).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import LmmError, require_level
from .contrast_df import ContrastDf, ddf_method
from .emm_format import emm_html, emm_text
from .multiplicity import adjust_method, adjust_p
from .refgrid import reference_grid
from .response_scale import back_transform, response_name

PAIRWISE = ("pairwise", "revpairwise")
# emmeans' default adjustment of each method; None: one lmmpy does not compute (give adjust=)
DEFAULT_ADJUST = {
    "pairwise": "tukey",
    "revpairwise": "tukey",
    "eff": "fdr",
    "trt.vs.ctrl": None,  # emmeans: dunnettx
    "consec": None,  # emmeans: mvt
    "custom": "none",
}
DDF_NOTE = {"satterthwaite": "satterthwaite", "kenward-roger": "kenward-roger", "asymptotic": "asymptotic"}


def parse_specs(specs) -> tuple:
    """(main variables, by variables) from emmeans' ``"a"``, ``"a * b"``, ``"~ a | b"`` or a list."""
    if isinstance(specs, (list, tuple)):
        return [str(s) for s in specs], []
    if not isinstance(specs, str) or not specs.strip():
        raise LmmError(f"specs must be a string such as 'task', 'task * stimulus' or 'a | b', not {specs!r}")
    text = specs.strip()
    if "~" in text:
        lhs, text = text.split("~", 1)
        if lhs.strip():
            raise LmmError(f"specs {specs!r}: a left-hand side ({lhs.strip()}) is not supported; use .pairs()")
    parts = text.split("|")
    if len(parts) > 2:
        raise LmmError(f"specs {specs!r}: at most one '|'")

    def names(part: str) -> list:
        out = [n.strip() for n in re.split(r"[*+:]", part) if n.strip()]
        if not out and part is parts[0]:
            raise LmmError(f"specs {specs!r} name no variable")
        return out

    main = names(parts[0])
    by = names(parts[1]) if len(parts) == 2 else []
    return main, by


def _family(fit):
    """The fit's GLMM family (with ``family``, ``link``, ``linkinv``, ``mu_eta``), None for an LMM."""
    fam = getattr(fit, "family", None)
    if fam is None or str(getattr(fam, "family", "gaussian")) == "gaussian" and fam.link_name == "identity":
        return None
    return fam


def emmeans(fit, specs, ddf=None, level: float = 0.95, at=None, type: str = "link") -> EmmGrid:
    """Estimated marginal means of ``fit`` for ``specs``, as R's ``emmeans(fit, specs)``.

    ``ddf``: "satterthwaite" (the default for lmer fits), "kenward-roger" (REML fits) or
    "asymptotic" (df = inf; the only one, and the default, for glmer fits).  ``at``:
    {variable: values} for the reference grid.  ``type``: "link" or "response" (GLMMs:
    back-transformed means, see :mod:`lmmpy.inference.response_scale`; their contrasts under a
    log or logit link are then ratios or odds ratios, see :class:`EmmContrasts`)."""
    level = require_level(level)
    family = _family(fit)
    if ddf is None:
        ddf = "asymptotic" if family is not None else "satterthwaite"
    method = ddf_method(ddf)
    if family is not None and method != "asymptotic":
        raise LmmError(f"ddf={ddf!r}: a GLMM's marginal means have asymptotic df only (ddf='asymptotic')")
    if type not in ("link", "response"):
        raise LmmError(f"type={type!r}: use 'link' or 'response'")
    main, by = parse_specs(specs)
    rg = reference_grid(fit, at)
    unknown = [v for v in main + by if v not in rg.values]
    if unknown:
        raise LmmError(
            f"specs name {', '.join(map(repr, unknown))}, not a variable of the fixed part "
            f"({', '.join(rg.values) or 'none'})"
        )
    if len(set(main + by)) != len(main + by):
        raise LmmError(f"specs {specs!r} name a variable twice")
    cell_vars = main + by
    rows, cells = [], []
    for combo in itertools.product(*[rg.values[v] for v in reversed(cell_vars)]):
        combo = tuple(reversed(combo))
        mask = np.ones(len(rg.grid), dtype=bool)
        for v, val in zip(cell_vars, combo):
            mask &= (rg.grid[v] == val).to_numpy()
        rows.append(rg.X[mask].mean(axis=0) if rg.estimable[mask].all() else np.full(rg.X.shape[1], np.nan))
        cells.append(combo)
    L = np.array(rows)
    labels = pd.DataFrame(cells, columns=cell_vars)
    for v in cell_vars:
        if rg.is_factor[v]:
            src = rg.grid[v]
            if isinstance(src.dtype, pd.CategoricalDtype):
                labels[v] = pd.Categorical(labels[v], categories=[c for c in src.cat.categories if c in rg.values[v]])
    averaged = [v for v in rg.values if v not in cell_vars and len(rg.values[v]) > 1]
    return EmmGrid(fit, L, labels, main, by, ContrastDf(fit, method), level, averaged, family, type, rg)


class EmmGrid:
    """Estimated marginal means: ``to_frame()`` (the specs' columns, emmean, SE, df and the
    confidence limits), printed as emmeans prints them; ``pairs()`` and ``contrast()``."""

    def __init__(self, fit, L, labels, main, by, dfs, level, averaged, family, type, refgrid):
        self.fit, self.L, self.labels, self.main, self.by = fit, L, labels, main, by
        self.level, self.averaged, self.family, self.type = level, averaged, family, type
        self.refgrid = refgrid
        self._dfs = dfs
        ok = np.all(np.isfinite(L), axis=1)
        beta = fit.fixef.to_numpy()
        self.estimate = np.full(len(L), np.nan)
        self.se = np.full(len(L), np.nan)
        self.df = np.full(len(L), np.nan)
        if ok.any():
            self.estimate[ok] = L[ok] @ beta
            self.se[ok] = dfs.se(L[ok])
            self.df[ok] = dfs.df(L[ok])

    @property
    def ddf(self) -> str:
        return self._dfs.method

    def _limits(self, est, se, df):
        q = np.where(np.isinf(df), stats.norm.ppf((1 + self.level) / 2), 0.0)
        fin = np.isfinite(df) & ~np.isnan(df)
        q[fin] = stats.t.ppf((1 + self.level) / 2, df[fin])
        return est - q * se, est + q * se

    def to_frame(self) -> pd.DataFrame:
        """One row per cell: the specs' variables, emmean (or prob/rate/response), SE, df,
        lower.CL and upper.CL (asymp.LCL, asymp.UCL when df = inf)."""
        lo, hi = self._limits(self.estimate, self.se, self.df)
        est, se, name = self.estimate, self.se, "emmean"
        if self.type == "response" and self.family is not None:
            est, se, lo, hi = back_transform(est, se, lo, hi, self.family.linkinv, self.family.mu_eta)
            name = response_name(self.family.family)
        out = self.labels.copy()
        out[name], out["SE"], out["df"] = est, se, self.df
        asymptotic = self.ddf == "asymptotic"
        out["asymp.LCL" if asymptotic else "lower.CL"] = lo
        out["asymp.UCL" if asymptotic else "upper.CL"] = hi
        return out

    def _notes(self) -> list:
        notes = []
        if self.averaged:
            notes.append(f"Results are averaged over the levels of: {', '.join(self.averaged)}")
        if self.family is None:  # a GLMM's df = inf is no method emmeans names
            notes.append(f"Degrees-of-freedom method: {DDF_NOTE[self.ddf]}")
        notes.append(f"Confidence level used: {self.level:g}")
        if self.type == "response" and self.family is not None:
            notes.append(f"Intervals are back-transformed from the {self.family.link_name} scale")
        return notes

    def __str__(self) -> str:
        frame = self.to_frame()
        est = [c for c in frame.columns if c not in self.labels.columns][0]
        return emm_text(frame, est, self.by, self._notes())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return emm_html(self.to_frame(), self._notes())

    # -- contrasts ---------------------------------------------------------------------------
    def _groups(self, by) -> list:
        """Row indices of each by-group, in order."""
        if not by:
            return [np.arange(len(self.labels))]
        keys = [tuple(r) for r in self.labels[by].astype(str).itertuples(index=False)]
        out: dict = {}
        for i, k in enumerate(keys):
            out.setdefault(k, []).append(i)
        return [np.array(v) for v in out.values()]

    def _level_names(self, rows, vars_) -> list:
        """emmeans' names of the means in contrasts: the levels of the non-by variables joined by
        spaces, a variable's name put before levels that are numbers ("sex0")."""

        def numeric_like(v):
            try:
                [float(str(x)) for x in self.refgrid.values[v]]
                return True
            except ValueError:
                return False

        prefix = {v: numeric_like(v) for v in vars_}
        names = []
        for i in rows:
            parts = []
            for v in vars_:
                val = self.labels[v].iloc[i]
                txt = str(int(val)) if isinstance(val, float) and val.is_integer() else str(val)
                parts.append(f"{v}{txt}" if prefix[v] else txt)
            names.append(" ".join(parts))
        return names

    def pairs(self, adjust: str = "tukey", reverse: bool = False, by=None) -> EmmContrasts:
        """All pairwise differences within each by-group (emmeans' ``pairs()``); ``reverse``:
        later minus earlier ("revpairwise")."""
        return self.contrast("revpairwise" if reverse else "pairwise", adjust=adjust, by=by)

    def contrast(self, method="pairwise", adjust=None, by=None, ref: int = 0) -> EmmContrasts:
        """Contrasts of the means within each by-group: ``method`` "pairwise", "revpairwise",
        "trt.vs.ctrl" (each against the ``ref``-th mean), "consec", "eff" (each minus the mean
        of all) or a dict {name: coefficients}.  ``adjust``: "tukey" (pairwise methods; else
        changed to "sidak", as emmeans does), "bonferroni", "holm", "sidak", "fdr" or "none";
        by default emmeans' (tukey for pairwise, fdr for eff, none for a dict; trt.vs.ctrl and
        consec need one given, as emmeans' dunnettx and mvt are not computed)."""
        by = self.by if by is None else ([by] if isinstance(by, str) else list(by))
        bad = [b for b in by if b not in self.labels.columns]
        if bad:
            raise LmmError(f"by names {', '.join(map(repr, bad))}, not a variable of these means")
        key = "custom" if isinstance(method, dict) else str(method)
        if key not in DEFAULT_ADJUST:
            raise LmmError(
                f"contrast method {method!r}: use {', '.join(k for k in DEFAULT_ADJUST if k != 'custom')} or a dict"
            )
        if adjust is None:
            adjust = DEFAULT_ADJUST[key]
            if adjust is None:
                raise LmmError(
                    f"contrast(method={key!r}): emmeans' default adjustment for it is not computed by lmmpy; "
                    "give adjust= ('bonferroni', 'holm', 'sidak', 'fdr' or 'none')"
                )
        adjust = adjust_method(adjust)
        notes_extra = []
        if adjust == "tukey" and key not in PAIRWISE:
            adjust = "sidak"
            notes_extra.append('Note: adjust = "tukey" was changed to "sidak"')
        others = [v for v in self.labels.columns if v not in by]
        rows_out, L_out, fam, sums = [], [], [], []
        for g, rows in enumerate(self._groups(by)):
            names = self._level_names(rows, others)
            k = len(rows)
            Lg = self.L[rows]
            missing = ~np.all(np.isfinite(Lg), axis=1)  # non-estimable means
            for cname, coef in _coefficients(key, method, names, k, ref):
                row = coef @ np.where(missing[:, None], 0.0, Lg)
                L_out.append(np.full_like(row, np.nan) if np.any(coef[missing] != 0) else row)
                rows_out.append((cname, rows[0]))
                fam.append(g)
                sums.append(float(np.sum(coef)))
        L_c = np.array(L_out).reshape(len(L_out), self.L.shape[1])
        zero_sum = bool(np.all(np.abs(sums) < 1e-8))
        return EmmContrasts(self, L_c, rows_out, np.array(fam), by, adjust, key, notes_extra, zero_sum)


def _coefficients(key, method, names, k, ref):
    if key == "pairwise":
        return [(f"{names[i]} - {names[j]}", _e(k, i) - _e(k, j)) for i in range(k) for j in range(i + 1, k)]
    if key == "revpairwise":
        return [(f"{names[i]} - {names[j]}", _e(k, i) - _e(k, j)) for i in range(1, k) for j in range(i)]
    if key == "trt.vs.ctrl":
        if not 0 <= ref < k:
            raise LmmError(f"ref={ref}: there are {k} means")
        return [(f"{names[i]} - {names[ref]}", _e(k, i) - _e(k, ref)) for i in range(k) if i != ref]
    if key == "consec":
        return [(f"{names[i]} - {names[i - 1]}", _e(k, i) - _e(k, i - 1)) for i in range(1, k)]
    if key == "eff":
        return [(f"{names[i]} effect", _e(k, i) - 1.0 / k) for i in range(k)]
    out = []
    for cname, coef in method.items():
        c = np.asarray(coef, dtype=float)
        if c.shape != (k,):
            raise LmmError(f"contrast {cname!r} has {c.size} coefficients; the means (per by-group) are {k}")
        out.append((str(cname), c))
    return out


# the link whose differences are logs of ratios -> emmeans' column and the scale it tests on
RATIO_COLUMN = {"log": "ratio", "logit": "odds.ratio"}
RATIO_TEST_SCALE = {"ratio": "log", "odds.ratio": "log odds ratio"}


def _ratio_name(emm, zero_sum: bool):
    """The column of back-transformed contrasts ("ratio", "odds.ratio"), None where they stay
    on the link scale (see :class:`EmmContrasts`)."""
    if emm.type != "response" or emm.family is None or not zero_sum:
        return None
    return RATIO_COLUMN.get(str(emm.family.link_name).lower())


def _e(k, i):
    e = np.zeros(k)
    e[i] = 1.0
    return e


class EmmContrasts:
    r"""Contrasts of marginal means: ``to_frame()`` (contrast, by-variables, estimate, SE, df,
    t.ratio or z.ratio, p.value), printed as emmeans prints them.

    Means on the response scale of a GLMM with the log or logit link (``type="response"``):
    contrasts whose coefficients sum to zero are back-transformed as emmeans does.  A
    difference of logs is the log of a ratio, so with d-hat the contrast and s its SE on the
    link scale the table shows

        ratio = exp(d-hat),   SE = exp(d-hat) s   (the delta method),   null = exp(0) = 1,

    in a column ``ratio`` (log link: rate ratios) or ``odds.ratio`` (logit link), the names
    "a / b", and z and p from the link scale ("Tests are performed on the log scale").
    The attributes ``estimate`` and ``se`` stay on the link scale.  Other
    links (probit, ...) and other contrasts stay on the link scale, with emmeans' note."""

    def __init__(self, emm, L, rows, family_index, by, adjust, method, notes_extra, zero_sum=True):
        self.emm, self.L, self.by, self.adjust, self.method = emm, L, by, adjust, method
        self._notes_extra = notes_extra
        self.ratio_name = _ratio_name(emm, zero_sum)
        beta = emm.fit.fixef.to_numpy()
        ok = np.all(np.isfinite(L), axis=1) if len(L) else np.zeros(0, bool)
        n = len(L)
        self.estimate, self.se, self.df = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        if ok.any():
            self.estimate[ok] = L[ok] @ beta
            self.se[ok] = emm._dfs.se(L[ok])
            self.df[ok] = emm._dfs.df(L[ok])
        self.ratio = self.estimate / self.se
        self.p_value = np.full(n, np.nan)
        self.names = [r[0] for r in rows]
        self._by_rows = [r[1] for r in rows]
        self.family_sizes = []
        for g in np.unique(family_index):
            idx = np.flatnonzero(family_index == g)
            n_means = len(emm._groups(by)[g])
            self.p_value[idx] = adjust_p(self.ratio[idx], self.df[idx], adjust, n_means)
            self.family_sizes.append((n_means, len(idx)))

    def to_frame(self) -> pd.DataFrame:
        """One row per contrast: contrast, the by-variables, estimate (or ratio / odds.ratio),
        SE, df, (null,) t.ratio or z.ratio, p.value."""
        ratio = self.ratio_name is not None
        out = pd.DataFrame({"contrast": [n.replace(" - ", " / ") if ratio else n for n in self.names]})
        for b in self.by:
            out[b] = self.emm.labels[b].iloc[self._by_rows].to_numpy()
        if self.ratio_name is not None:
            est = np.exp(self.estimate)
            out[self.ratio_name], out["SE"], out["df"], out["null"] = est, est * self.se, self.df, 1.0
        else:
            out["estimate"], out["SE"], out["df"] = self.estimate, self.se, self.df
        out["z.ratio" if self.emm.ddf == "asymptotic" else "t.ratio"] = self.ratio
        out["p.value"] = self.p_value
        return out

    def _notes(self) -> list:
        notes = []
        if self.emm.averaged:
            notes.append(f"Results are averaged over the levels of: {', '.join(self.emm.averaged)}")
        if self.emm.family is None:
            notes.append(f"Degrees-of-freedom method: {DDF_NOTE[self.emm.ddf]}")
        if self.emm.type == "response" and self.emm.family is not None and self.ratio_name is None:
            notes.append(f"Note: contrasts are still on the {self.emm.family.link_name} scale")
        if self.adjust != "none" and any(n_tests > 1 for _, n_tests in self.family_sizes):
            n_means, n_tests = self.family_sizes[0]
            if self.adjust == "tukey":
                notes.append(f"P value adjustment: tukey method for comparing a family of {n_means} estimates")
            else:
                notes.append(f"P value adjustment: {self.adjust} method for {n_tests} tests")
        if self.ratio_name is not None:
            notes.append(f"Tests are performed on the {RATIO_TEST_SCALE[self.ratio_name]} scale")
        return notes + self._notes_extra

    def __str__(self) -> str:
        return emm_text(self.to_frame(), self.ratio_name or "estimate", self.by, self._notes())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return emm_html(self.to_frame(), self._notes())
