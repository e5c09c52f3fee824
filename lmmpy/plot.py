"""Plots of a fitted model (matplotlib, the ``plot`` extra): each function draws on ``ax``
(a new figure when None) and returns the Axes (``profile``: an array of them).

- :func:`caterpillar` -- conditional modes with prediction intervals, sorted (lme4's dotplot
  of ``ranef(fit, condVar=TRUE)``)
- :func:`qq` -- normal quantile plot of the residuals or of a term's random effects
- :func:`residuals` -- residuals against fitted values
- :func:`shrinkage` -- per-group least-squares estimates against the model's (fixed effects
  plus conditional modes): the pull of the small groups towards the population line
- :func:`profile` -- lme4's profile zeta plots, one panel per parameter
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import LmmError
from .formula.design import ReTerm
from .results.model import FittedLmm

# matplotlib is treated as untyped (pyproject's [tool.mypy]): Axes and pyplot are Any here


def _plt() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        raise LmmError("plots need matplotlib: pip install 'lmmpy[plot]'") from None
    return plt


def _axes(ax: Any) -> Any:
    return ax if ax is not None else _plt().subplots()[1]


def _term(fit: FittedLmm, group: str | None, column: str | None) -> tuple[ReTerm, int, np.ndarray, np.ndarray]:
    """The random-effects term of ``group`` (default: the first) holding ``column``
    (default: its first column): (term, column index, modes, conditional SDs)."""
    terms = fit.design.reterms
    group = group if group is not None else terms[0].group
    for t, b, v in zip(terms, fit.b_terms, fit.condvar_terms):
        if t.group == group and (column is None or column in t.cnames):
            j = 0 if column is None else t.cnames.index(column)
            return t, j, b[:, j], np.sqrt(v[:, j, j])
    known = ", ".join(f"{t.group} ({', '.join(t.cnames)})" for t in terms)
    raise LmmError(f"no random effect {column or ''} for {group!r}; the model has: {known}")


def caterpillar(
    fit: FittedLmm, group: str | None = None, column: str | None = None, level: float = 0.95, ax: Any = None
) -> Any:
    """Conditional modes of one random effect, sorted, with +- z * conditional SD."""
    t, j, b, sd = _term(fit, group, column)
    order = np.argsort(b)
    z = stats.norm.ppf(0.5 + level / 2)
    ax = _axes(ax)
    pos = np.arange(len(b))
    ax.errorbar(b[order], pos, xerr=z * sd[order], fmt="o", ms=3, lw=0.8, capsize=0)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    if len(b) <= 40:
        ax.set_yticks(pos, [str(t.levels[i]) for i in order])
    ax.set_xlabel(f"{t.cnames[j]} | {t.group}  (conditional mode, {level:.0%} interval)")
    ax.set_ylabel(t.group)
    return ax


def qq(
    fit: FittedLmm, which: str = "residuals", group: str | None = None, column: str | None = None, ax: Any = None
) -> Any:
    """Normal quantile plot of the scaled residuals, or (``which="ranef"``) of one term's
    conditional modes, with the line through the quartiles."""
    if which == "residuals":
        values, label = fit.residuals("pearson", scaled=True).to_numpy(), "scaled residuals"
    elif which == "ranef":
        t, j, values, _ = _term(fit, group, column)
        label = f"{t.cnames[j]} | {t.group}"
    else:
        raise LmmError(f"qq(which={which!r}): use 'residuals' or 'ranef'")
    values = np.sort(values)
    n = values.size
    theo = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    ax = _axes(ax)
    ax.plot(theo, values, "o", ms=3)
    q_s, q_t = np.quantile(values, [0.25, 0.75]), stats.norm.ppf([0.25, 0.75])
    slope = (q_s[1] - q_s[0]) / (q_t[1] - q_t[0])
    ax.axline((q_t[0], q_s[0]), slope=slope, color="grey", lw=0.8)
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel(label)
    return ax


def residuals(fit: FittedLmm, ax: Any = None) -> Any:
    """Residuals (response scale) against fitted values."""
    ax = _axes(ax)
    ax.plot(fit.fitted.to_numpy(), fit.residuals().to_numpy(), "o", ms=3)
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("fitted values")
    ax.set_ylabel("residuals")
    return ax


def shrinkage(fit: FittedLmm, group: str | None = None, ax: Any = None) -> Any:
    """Per-group least-squares estimates of a term's coefficients (each group's own
    regression of y on the term's columns) against the model's: fixed effect plus
    conditional mode.  Two columns (intercept and slope): arrows from the group's own
    estimate to the model's; one column: the two estimates against each other."""
    t, _, _, _ = _term(fit, group, None)
    b = fit.b_terms[fit.design.reterms.index(t)]
    fixef = fit.fixef
    beta = np.array([fixef.get(c, 0.0) for c in t.cnames])
    model_est = beta + b
    y = fit.design.y
    own = np.full_like(model_est, np.nan)
    for lv in range(t.nlevels):
        rows = t.codes == lv
        if rows.sum() > t.k:
            own[lv] = np.linalg.lstsq(t.X[rows], y[rows], rcond=None)[0]
    ax = _axes(ax)
    ok = np.all(np.isfinite(own), axis=1)
    if t.k >= 2:
        ax.plot(own[ok, 0], own[ok, 1], "o", ms=4, label="own regression")
        ax.plot(model_est[:, 0], model_est[:, 1], "s", ms=4, label="mixed model")
        for (x0, y0), (x1, y1) in zip(own[ok, :2], model_est[ok, :2]):
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", lw=0.6, color="grey"))
        ax.plot([beta[0]], [beta[1]], "k+", ms=12, label="fixed effects")
        ax.set_xlabel(t.cnames[0])
        ax.set_ylabel(t.cnames[1])
    else:
        ax.plot(own[ok, 0], model_est[ok, 0], "o", ms=4, label="groups")
        lo, hi = np.nanmin(own[ok, 0]), np.nanmax(own[ok, 0])
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="no shrinkage")
        ax.axhline(beta[0], color="k", lw=0.8, label="fixed effect")
        ax.set_xlabel(f"{t.cnames[0]}: the group's own estimate")
        ax.set_ylabel(f"{t.cnames[0]}: mixed model")
    ax.set_title(f"shrinkage: {t.group}")
    ax.legend(fontsize="small")
    return ax


def profile(fit: Any, prof: pd.DataFrame | None = None, axes: Any = None, level: float = 0.95) -> Any:
    """lme4's profile plot: zeta against each parameter, with the +- z(level) lines where the
    profile interval ends.  ``prof``: the output of ``fit.profile()`` (computed if None)."""
    plt = _plt()
    prof = fit.profile() if prof is None else prof
    names = list(dict.fromkeys(prof[".par"]))
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3), squeeze=False)
        axes = axes[0]
    z = stats.norm.ppf(0.5 + level / 2)
    for ax, nm in zip(axes, names):
        part = prof[prof[".par"] == nm]
        ax.plot(part["value"].to_numpy(), part["zeta"].to_numpy(), "-o", ms=3)
        for h in (-z, 0.0, z):
            ax.axhline(h, color="grey", lw=0.6, ls="--" if h else "-")
        ax.set_xlabel(nm)
    axes[0].set_ylabel("zeta")
    return np.asarray(axes)
