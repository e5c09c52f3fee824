r"""emmeans' reference grid of a fitted model: every combination of the fixed part's variables
at their reference values, and the row of the fixed-effects matrix of each.

Reference values, as emmeans chooses them by default: each factor at all its levels (the
levels of the fitting data, in their order); each numeric covariate at its mean over the rows
the model was fitted to (the mean of the variable, not of a transform of it: ``log(x)`` is
taken at log(mean x), as emmeans does); a numeric variable that the formula wraps in
``factor()`` is a factor with its sorted distinct values as levels.  ``at`` replaces the
values of any variable (a scalar or a list).

Grid rows run with the first variable varying fastest (R's ``expand.grid``).  A row x of the
grid is estimable when x lies in the row space of the fitting data's fixed-effects matrix
(with its aliased columns, before they are dropped): |x N| <= tol max |x| for a basis N of
that matrix's null space.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import LmmError
from ..formula.design import _FACTOR_FUNS, names_in
from ..formula.parser import Call, Name
from .predict import new_data_matrix

ESTIMABLE_TOL = 1e-8


@dataclass
class ReferenceGrid:
    """The grid (a DataFrame of the variables' values), its fixed-effects rows X (grid rows x p,
    the fit's columns), which rows are estimable, and each variable's values."""

    grid: pd.DataFrame
    X: np.ndarray
    estimable: np.ndarray
    values: dict  # variable -> its values on the grid, in order
    is_factor: dict = field(default_factory=dict)  # variable -> whether it is a factor


def _factor_wrapped(node, out):
    """Names the formula wraps in factor() (or as.factor, ordered, ...)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Call):
            if n.op in _FACTOR_FUNS and n.args and isinstance(n.args[0], Name):
                out.add(n.args[0].id)
            stack.extend(n.args)
    return out


def _is_categorical(col: pd.Series) -> bool:
    return (
        isinstance(col.dtype, pd.CategoricalDtype)
        or col.dtype == object
        or pd.api.types.is_string_dtype(col)
        or pd.api.types.is_bool_dtype(col)
    )


def _levels(col: pd.Series) -> list:
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.dropna().unique())
        return [lv for lv in col.cat.categories if lv in present]
    return sorted(col.dropna().unique().tolist())


def grid_variables(fit) -> list:
    """The data columns the fixed part reads, in order of first appearance."""
    design = fit.design
    used: list = []
    names_in(design.formula.fixed, used)
    return list(dict.fromkeys(nm for nm, _ in used if nm in design.frame.columns))


def reference_grid(fit, at=None) -> ReferenceGrid:
    """The reference grid of ``fit`` (see the module's docstring); ``at``: {variable: values}."""
    design = fit.design
    if design.offset is not None or design.formula.offsets:
        raise LmmError("emmeans of a model with an offset is not supported")
    at = dict(at or {})
    if not isinstance(at, dict):
        raise LmmError("at must be a dict {variable: value or list of values}")
    variables = grid_variables(fit)
    unknown = sorted(set(at) - set(variables))
    if unknown:
        raise LmmError(
            f"at names {', '.join(map(repr, unknown))}, not a variable of the fixed part "
            f"({', '.join(variables) or 'none'})"
        )
    wrapped = _factor_wrapped(design.formula.fixed, set())
    frame = design.frame
    values, is_factor = {}, {}
    for v in variables:
        col = frame[v]
        factor = _is_categorical(col) or v in wrapped
        levels: list = _levels(col) if factor else []
        if v in at:
            given = at[v]
            given = list(given) if isinstance(given, (list, tuple, np.ndarray, pd.Series, pd.Index)) else [given]
            if not given:
                raise LmmError(f"at[{v!r}] is empty")
            if factor:
                by_label = {str(lv): lv for lv in levels}
                bad = [g for g in given if g not in levels and str(g) not in by_label]
                if bad:
                    raise LmmError(f"at[{v!r}]: {', '.join(map(repr, bad))} not among its levels {levels}")
                given = [g if g in levels else by_label[str(g)] for g in given]
            else:
                try:
                    given = [float(g) for g in given]
                except (TypeError, ValueError):
                    raise LmmError(f"at[{v!r}] must be numbers: {v} is a numeric covariate") from None
            values[v] = given
        else:
            values[v] = levels if factor else [float(col.mean())]
        is_factor[v] = factor
    combos = list(itertools.product(*[values[v] for v in reversed(variables)]))
    grid = pd.DataFrame([tuple(reversed(c)) for c in combos], columns=variables)
    for v in variables:
        col = frame[v]
        if isinstance(col.dtype, pd.CategoricalDtype):
            grid[v] = pd.Categorical(grid[v], categories=col.cat.categories, ordered=col.cat.ordered)
        elif pd.api.types.is_bool_dtype(col):
            grid[v] = grid[v].astype(bool)
    X_all = new_data_matrix(design.fixed_spec, grid, "reference grid's fixed-effects matrix")
    if not len(variables):  # an intercept-only fixed part: one grid row
        X_all = np.ones((1, 1)) if X_all.shape[0] == 0 else X_all
    estimable = np.ones(X_all.shape[0], dtype=bool)
    if design.x_keep is not None:
        full = new_data_matrix(design.fixed_spec, frame, "fixed-effects matrix")
        _, s, vt = np.linalg.svd(full, full_matrices=True)
        rank = int(np.sum(s > s[0] * max(full.shape) * np.finfo(float).eps))
        N = vt[rank:].T
        if N.size:
            scale = np.maximum(np.abs(X_all).max(axis=1), 1.0)
            estimable = np.abs(X_all @ N).max(axis=1) <= ESTIMABLE_TOL * scale * 1e3
        X_all = X_all[:, design.x_keep]
    if X_all.shape[1] != design.p:
        raise LmmError("the reference grid gives a fixed-effects matrix of another width than the fit's")
    return ReferenceGrid(grid=grid, X=X_all, estimable=estimable, values=values, is_factor=is_factor)
