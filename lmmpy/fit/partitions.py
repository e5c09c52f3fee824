r"""The model of a Dask DataFrame: its partitions reduced to the cross-products by a tree reduction.

Every block of A = [Z X y]'W[Z X y] (:mod:`lmmpy.fit.cross_products`) is a sum over rows, so
for row partitions P_1, ..., P_m

    A = sum_i [Z X y]_{P_i}' W_{P_i} [Z X y]_{P_i}

and the same holds for n, sum(log w) and the rows per level.  Each partition is materialised
on the worker that holds it (:class:`lmmpy.formula.partition.PartitionSpec`: the same columns
and levels everywhere), reduced to its :class:`PartitionSums`, and the sums are added in a
tree (``SPLIT_EVERY`` at a time) on the active Dask scheduler: the threads of this process by
default, the cluster of a ``distributed.Client`` if one was made.  Only the sums travel: their
size is that of the model (levels, pairs of levels of Z_t'Z_1, the tail block), never n.

After the reduction, as lme4 does on the whole data:

- levels without a complete row (unused categories, levels seen only in dropped rows) are
  dropped from the cross-products (their rows and columns are zero);
- the terms are ordered by decreasing number of levels; when dropping levels changes that
  order, the partitions are reduced again in the new order (once);
- aliased columns of X are dropped, found from X'WX: column j is kept when its residual
  on the kept ones, r_j^2 = G_jj - g_j' G_KK^{-1} g_j, exceeds tol^2 G_jj (R's qr() rule with
  tol = 1e-7 on norms, here on the weighted Gram).

dask is imported only when Dask data are fitted.
"""

from __future__ import annotations

import functools
import operator
import uuid
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula.design import RankDeficientWarning, check_terms, lme4_term_order
from ..formula.parser import deparse
from ..formula.partition import FormulaColumns, GroupLevels, PartitionSpec
from .cross_products import CrossProducts
from .deviance import LmmModel

SPLIT_EVERY = 8  # partial sums added per task of the tree reduction
ALIAS_TOL = 1e-7


def is_dask_frame(data) -> bool:
    """Whether ``data`` is a Dask DataFrame (without importing dask for other data)."""
    kind = type(data).__module__.split(".")[0]
    return kind in ("dask", "dask_expr") and hasattr(data, "npartitions") and hasattr(data, "columns")


@dataclass
class PartitionSums:
    """What a set of rows contributes: the cross-products (None for no complete row), the
    complete rows per level of each term, the numbers of complete and read rows, sum(log w)
    and the response's sum and sum of squares (the fit's fingerprint of its data)."""

    cp: CrossProducts | None
    counts: list | None
    n: int
    n_read: int
    log_w_sum: float
    y_sum: float
    y_sq: float

    def __add__(self, other: "PartitionSums") -> "PartitionSums":
        if self.cp is None or other.cp is None:
            cp, counts = (other.cp, other.counts) if self.cp is None else (self.cp, self.counts)
        else:
            assert self.counts is not None and other.counts is not None  # set with cp
            cp, counts = self.cp + other.cp, [a + b for a, b in zip(self.counts, other.counts)]
        return PartitionSums(
            cp,
            counts,
            self.n + other.n,
            self.n_read + other.n_read,
            self.log_w_sum + other.log_w_sum,
            self.y_sum + other.y_sum,
            self.y_sq + other.y_sq,
        )


def partition_sums(part: pd.DataFrame, spec: PartitionSpec) -> PartitionSums:
    """One partition's :class:`PartitionSums` (run where the partition is)."""
    design, _ = spec.materialise(part)
    if design is None:
        return PartitionSums(None, None, 0, len(part), 0.0, 0.0, 0.0)
    cp = CrossProducts.from_design(design)
    cp.rows = None  # only the sums travel
    counts = [np.bincount(t.codes, minlength=t.nlevels) for t in design.reterms]
    y, w = design.y, design.weights
    log_w = float(np.log(w).sum()) if w is not None else 0.0
    return PartitionSums(cp, counts, design.n, len(part), log_w, float(y.sum()), float(y @ y))


def _add(*sums):
    return functools.reduce(operator.add, sums)


def reduce_partitions(ddf, spec: PartitionSpec, split_every: int = SPLIT_EVERY) -> PartitionSums:
    """The sums of all partitions of ``ddf``, by a tree reduction on the active scheduler."""
    import dask

    spec_node = dask.delayed(spec, name=f"lmmpy-spec-{uuid.uuid4().hex}")  # sent once per worker
    level = [dask.delayed(partition_sums)(p, spec_node) for p in ddf.to_delayed()]
    while len(level) > 1:
        level = [dask.delayed(_add)(*level[i : i + split_every]) for i in range(0, len(level), split_every)]
    return level[0].compute()


def partition_values(part: pd.DataFrame, single, multi, factors) -> dict:
    """One partition's distinct values: column -> array, and (columns of an interaction) ->
    their distinct combinations (a DataFrame), complete values only."""
    out = {}
    for c in single:  # a declared factor's missing value is the level "nan", as for pandas data
        out[c] = part[c].astype(str).unique() if c in factors else part[c].dropna().unique()
    for g in multi:
        out[g] = part[list(g)].dropna().drop_duplicates()
    return out


def _union(*found) -> dict:
    out = {}
    for key in found[0]:
        if isinstance(key, tuple):
            out[key] = pd.concat([f[key] for f in found]).drop_duplicates()
        else:
            out[key] = pd.unique(np.concatenate([np.asarray(f[key], dtype=object) for f in found]))
    return out


def _sorted_values(values) -> np.ndarray:
    """Distinct values, sorted as np.unique sorts a pandas column's values."""
    arr = pd.Series(values).infer_objects().to_numpy()
    return np.unique(arr.astype(object) if arr.dtype.kind in "OUS" else arr)


def whole_data_levels(ddf, columns: FormulaColumns, split_every: int = SPLIT_EVERY) -> tuple:
    """(levels of each categorical variable, :class:`GroupLevels` of each term): declared
    categories where the Dask column knows them, the rest in one pass over the partitions
    (their distinct values, united in a tree)."""
    import dask

    dtypes = ddf.dtypes
    single = list(dict.fromkeys(columns.categorical + [g[0] for g in columns.groups if len(g) == 1]))
    multi = list(dict.fromkeys(g for g in columns.groups if len(g) > 1))
    for g in multi:
        single += [c for c in g if c not in single]
    values, todo = {}, []
    for c in single:
        dtype = dtypes[c]
        if c not in columns.factors and isinstance(dtype, pd.CategoricalDtype) and ddf[c].cat.known:
            values[c] = np.asarray(dtype.categories)
        elif c not in columns.factors and pd.api.types.is_bool_dtype(dtype) and c in columns.categorical:
            values[c] = np.array([False, True])
        else:
            todo.append(c)
    found = {}
    if todo or multi:
        factors = set(columns.factors)
        level = [dask.delayed(partition_values)(p, todo, multi, factors) for p in ddf.to_delayed()]
        while len(level) > 1:
            level = [dask.delayed(_union)(*level[i : i + split_every]) for i in range(0, len(level), split_every)]
        found = level[0].compute()
    for c in todo:
        values[c] = _sorted_values(found[c])
    groups = []
    for g in columns.groups:
        if len(g) == 1:
            groups.append(GroupLevels([values[g[0]]]))
        else:
            gl = GroupLevels([values[c] for c in g])
            codes = gl.radix_codes(gl.column_codes(found[g], g))
            groups.append(GroupLevels(gl.values, np.unique(codes[codes >= 0])))
    return {c: values[c] for c in columns.categorical}, groups


def independent_columns(G: np.ndarray, tol: float = ALIAS_TOL) -> list:
    """Indices of the columns of X kept from its Gram matrix G = X'WX: each column whose
    residual on the columns kept before it has r^2 > tol^2 G_jj."""
    keep: list = []
    for j in range(G.shape[0]):
        gjj = G[j, j]
        if not gjj > 0:
            continue
        r2 = gjj
        if keep:
            g = G[keep, j]
            r2 = gjj - g @ np.linalg.solve(G[np.ix_(keep, keep)], g)
        if r2 > tol * tol * gjj:
            keep.append(j)
    return keep


def select(cp: CrossProducts, sizes, level_masks, x_keep) -> CrossProducts:
    """The cross-products of the kept levels (a boolean mask per term, in the model's order)
    and the kept columns of X."""
    cols = [np.repeat(m, k) for m, (_, k) in zip(level_masks, sizes)]
    one = np.flatnonzero(cols[0])
    tail = np.flatnonzero(np.concatenate(cols[1:])) if len(cols) > 1 else np.zeros(0, dtype=np.int64)
    q = cp.q_tail
    p = cp.At1_xy.shape[0] - 1
    xy = np.concatenate([np.asarray(x_keep, dtype=np.int64), [p]])
    rest = np.concatenate([tail, q + xy])
    A11 = cp.A11[np.flatnonzero(level_masks[0])]
    if q:
        At1_z = cp.At1_z[tail][:, one].tocsr()
        Att_zz = cp.Att_zz[tail][:, tail].tocsr()
    else:
        At1_z, Att_zz = cp.At1_z[:, one].tocsr(), cp.Att_zz
    return CrossProducts(A11, At1_z, cp.At1_xy[xy][:, one], Att_zz, cp.Att[np.ix_(rest, rest)])


def partitioned_model(ddf, formula, REML: bool = True, weights=None, offset=None, factors=(), env=None) -> LmmModel:
    """The :class:`LmmModel` of a Dask DataFrame (its ``design`` a
    :class:`lmmpy.formula.partition.PartitionedDesign`): one pass for unknown category sets
    (if any), one tree reduction (two if dropping unused levels reorders the terms)."""
    columns = FormulaColumns.of(formula, ddf.dtypes, factors=tuple(factors))
    for role, arg in (("weights", weights), ("offset", offset)):
        if arg is not None and not isinstance(arg, str):
            raise DataError(f"on Dask data {role} must name a column (an array cannot follow the partitions)")
        if arg is not None and arg not in ddf.columns:
            raise DataError(f"unknown {role} column {arg!r}")
    levels, groups = whole_data_levels(ddf, columns)
    for g, gl in zip(columns.groups, groups):
        if gl.nlevels == 0:
            raise DataError(f"the grouping factor {':'.join(g)!r} has no values")
    order = lme4_term_order([g.nlevels for g in groups])
    prototype = _prototype(ddf, columns, weights, offset)
    spec = PartitionSpec(columns, prototype, levels, groups, order, weights=weights, offset=offset, env=env)
    for attempt in range(2):
        sums = reduce_partitions(ddf, spec)
        if sums.cp is None:
            raise DataError("no observations left after dropping rows with missing values")
        assert sums.counts is not None  # set with cp
        masks = [c > 0 for c in sums.counts]  # model order
        kept: list = [None] * len(groups)
        for i, m in zip(spec.order, masks):
            kept[i] = spec.groups[i].subset(m) if not m.all() else spec.groups[i]
        new_order = lme4_term_order([g.nlevels for g in kept])
        if new_order == spec.order or attempt > 0:
            break
        spec = spec.with_groups(kept, new_order)  # the dropped levels reorder the terms: reduce again
    spec = spec.with_groups(kept, spec.order)
    assert sums.cp is not None  # the loop raised otherwise
    p_all = len(spec.xnames_all)
    q = sums.cp.q_tail
    x_keep = independent_columns(sums.cp.Att[q : q + p_all, q : q + p_all])
    if len(x_keep) < p_all:
        dropped = [nm for j, nm in enumerate(spec.xnames_all) if j not in x_keep]
        k = len(dropped)
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {k} column"
            f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})",
            RankDeficientWarning,
            stacklevel=3,
        )
    sizes = [(int(m.sum()), len(spec.term_cnames[i])) for i, m in zip(spec.order, masks)]
    cp = sums.cp
    if not all(m.all() for m in masks) or len(x_keep) < p_all:
        cp = select(cp, [(len(m), k) for m, (_, k) in zip(masks, sizes)], masks, x_keep)
    n = sums.n
    design = spec.rowless_design(n, sums.n_read - n, x_keep)
    design.fingerprint = (n, sums.y_sum, sums.y_sq)
    if n == 1:
        raise DataError("the data have 1 observation: grouping factors must have > 1 sampled level")
    mean_sq = sums.y_sq / n
    if sums.y_sq - sums.y_sum**2 / n <= 1e-13 * mean_sq * n:
        raise DataError(f"the response {deparse(columns.formula.response)!r} is constant")
    check_terms(design.reterms, n)
    if design.p >= n:
        raise DataError(
            f"the fixed-effects model matrix has {design.p} columns for {n} observations: there must be "
            "fewer fixed effects than observations"
        )
    model = LmmModel.from_cross_products(cp, sizes, design.theta_lower(), n, design.p, sums.log_w_sum, REML)
    model.design = design
    return model


PROTOTYPE_ROWS = 10_000


def _prototype(ddf, columns: FormulaColumns, weights, offset) -> pd.DataFrame:
    """The first rows (of the first partition that has complete ones) that the specs are
    fitted on; only they come to the client."""
    need = columns.variables + [c for c in (weights, offset) if c is not None]
    for i in range(ddf.npartitions):
        part = ddf.get_partition(i).head(PROTOTYPE_ROWS, npartitions=1)
        if part[need].notna().all(axis=1).any():
            return part
    raise DataError("no observations left after dropping rows with missing values")
