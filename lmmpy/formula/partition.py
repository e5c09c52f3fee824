"""One formula materialised the same way on every partition of a larger-than-memory frame.

A Dask DataFrame is a sequence of pandas partitions.  For the cross-products of the
partitions to add up to those of all rows (:mod:`lmmpy.fit.cross_products`), every partition
must give the same columns of X and the same random-effects columns Z, in the same order:

- the model matrices come from formulaic specs fixed once, on a prototype partition whose
  categorical variables carry the categories of the whole data (``levels``);
- each grouping factor's levels are those of the whole data, so a level missing from one
  partition is simply a zero column of that partition's Z;
- rows with a missing value are dropped per partition and counted, as for pandas data.

R transforms that are fitted to a whole column (``poly``, ``scale``, ``factor`` of a
computed value, ``cut`` by a number of breaks) cannot be fitted from one partition: they are
refused, with the advice to compute the column first.

:class:`PartitionedDesign` is the design of the whole data without its rows: everything the
results read (names, levels, sizes, the specs) and nothing of size n.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError
from .bars import LmerFormula, parse_formula
from .design import (
    Design,
    FormulaSpec,
    ModelVariables,
    ReTerm,
    _referenced_names,
    formula_offset,
    level_labels,
    names_in,
    response_values,
)
from .parser import deparse
from .rlang import mark_fitted


def needs_levels(dtype) -> bool:
    """Whether a column of this dtype is categorical for formulaic (its levels must be the
    whole data's on every partition)."""
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
    )


@dataclass
class FormulaColumns:
    """What a formula reads from a frame with the given columns: the variables, the grouping
    columns of each random-effects term, and the categorical variables of the model matrices."""

    formula: LmerFormula
    variables: list  # data columns the model reads (response, fixed, terms, groups)
    groups: list  # per random-effects term (formula order): its grouping columns
    categorical: list  # variables formulaic treats as categorical (outside grouping-only use)
    factors: tuple  # columns the user declared categorical

    @classmethod
    def of(cls, formula, dtypes: pd.Series, factors=()) -> "FormulaColumns":
        f = formula if isinstance(formula, LmerFormula) else parse_formula(formula)
        model_used: list = []
        for node in (f.response, f.fixed, *f.offsets, *(b.lhs for b in f.bars)):
            names_in(node, model_used)
        used = list(model_used)
        for b in f.bars:
            names_in(b.group, used)
        columns = list(dtypes.index)
        variables = []
        for name, in_call in used:
            if name in columns:
                if name not in variables:
                    variables.append(name)
            elif not in_call:  # a name inside a call may be a function or a constant of env
                cols = ", ".join(map(str, columns[:20]))
                raise DataError(f"unknown column {name!r} in formula {f.text!r}; the data have: {cols}")
        for b in f.bars:
            for g in b.group_vars:
                if g not in columns:
                    raise DataError(
                        f"unknown grouping column {g!r} in formula {f.text!r} (on Dask data every "
                        "variable must be a column)"
                    )
        for c in factors:
            if c not in variables:
                raise DataError(f"--factor/factors names {c!r}, which the formula does not use")
        model_names = {nm for nm, _ in model_used if nm in columns}
        categorical = [c for c in variables if c in model_names and (c in factors or needs_levels(dtypes[c]))]
        return cls(f, variables, [tuple(b.group_vars) for b in f.bars], categorical, tuple(factors))


@dataclass
class GroupLevels:
    """The levels of one grouping factor over the whole data: the values of each of its
    columns (sorted, or a categorical's categories) and, for an interaction ``a:b``, the
    observed combinations as mixed-radix codes (first column slowest), sorted."""

    values: list  # per column, an array of its distinct values
    combos: np.ndarray | None = None  # int64, for two or more columns

    @property
    def nlevels(self) -> int:
        return len(self.values[0]) if self.combos is None else len(self.combos)

    def labels(self) -> list:
        """The levels' labels as lme4 prints them ("a" or "a:b")."""
        per = [level_labels(v) for v in self.values]
        if self.combos is None:
            return per[0]
        out = []
        for code in self.combos:
            parts = []
            for lab in reversed(per):
                code, r = divmod(int(code), len(lab))
                parts.append(lab[r])
            out.append(":".join(reversed(parts)))
        return out

    def column_codes(self, frame: pd.DataFrame, names) -> list:
        """Per grouping column, each row's index among that column's values (-1 for none)."""
        return [
            np.asarray(pd.Categorical(frame[nm], categories=v).codes, dtype=np.int64)
            for nm, v in zip(names, self.values)
        ]

    def radix_codes(self, column_codes) -> np.ndarray:
        code = np.zeros(len(column_codes[0]), dtype=np.int64)
        for cc, v in zip(column_codes, self.values):
            code = code * len(v) + cc
        return code

    def codes(self, frame: pd.DataFrame, names) -> np.ndarray:
        """Each row's level index (an error for a value the levels do not have)."""
        cols = self.column_codes(frame, names)
        if any((c < 0).any() for c in cols):
            bad = next(nm for nm, c in zip(names, cols) if (c < 0).any())
            raise DataError(
                f"a partition has a value of {bad!r} that is not among its levels (the column's categories "
                "changed between partitions)"
            )
        if self.combos is None:
            return cols[0]
        radix = self.radix_codes(cols)
        pos = np.searchsorted(self.combos, radix)
        if (pos >= len(self.combos)).any() or (self.combos[np.minimum(pos, len(self.combos) - 1)] != radix).any():
            raise DataError(f"a partition has a combination of {':'.join(names)} not among the observed ones")
        return pos

    def subset(self, keep: np.ndarray) -> "GroupLevels":
        """The levels kept by the boolean mask ``keep`` (an interaction's combinations; a
        single column's values)."""
        if self.combos is None:
            return GroupLevels([np.asarray(self.values[0])[keep]])
        return GroupLevels(self.values, self.combos[keep])


class PartitionSpec:
    """The formula's specs and the whole data's levels: :meth:`materialise` turns any
    partition (a pandas DataFrame) into a :class:`Design` of the same columns and levels.

    ``prototype``: a partition with complete rows (the specs are fitted on it, its
    categorical variables cast to the whole data's categories); ``levels``: column ->
    its values over the whole data (the categorical variables); ``groups``: one
    :class:`GroupLevels` per random-effects term, formula order; ``order``: the terms' order
    (lme4's: decreasing number of levels)."""

    def __init__(
        self,
        columns: FormulaColumns,
        prototype: pd.DataFrame,
        levels: dict,
        groups: list,
        order,
        weights=None,
        offset=None,
        env=None,
    ):
        self.columns = columns
        self.levels = levels
        self.groups = groups
        self.order = list(order)
        self.weights, self.offset = weights, offset
        f = columns.formula
        for role, arg in (("weights", weights), ("offset", offset)):
            if arg is not None and not isinstance(arg, str):
                raise DataError(f"on Dask data {role} must name a column (an array cannot follow the partitions)")
            if arg is not None and arg not in prototype.columns:
                raise DataError(f"unknown {role} column {arg!r}")
        frame = self._frame(prototype)
        complete = frame.notna().all(axis=1).to_numpy()
        frame = frame.loc[complete]
        if len(frame) == 0:
            raise DataError("the first partition has no complete rows: the formula's specs are fitted on it")
        self.variables = ModelVariables(
            f.text,
            [c for c in frame.columns if c not in (".weights", ".offset")],
            {} if env is None else env,
            frame.columns[0],
            names=sorted(_referenced_names(f)),
        )
        mm, self.xnames_all = self.variables.model_matrix(f.fixed, frame, "fixed-effects matrix")
        self.fixed_spec = FormulaSpec(mm.model_spec, self.variables)
        self.term_specs, self.term_cnames = [], []
        for b in f.bars:
            mm, cn = self.variables.model_matrix(b.lhs, frame, f"random-effects term {b}")
            if mm.shape[1] == 0:
                raise DataError(f"the random-effects term {b} has no columns")
            self.term_specs.append(FormulaSpec(mm.model_spec, self.variables))
            self.term_cnames.append(cn)
        self.variables.missing_rows(frame, (f.fixed, *f.offsets, *(b.lhs for b in f.bars), f.response))
        response_values(f, frame, self.variables)
        formula_offset(f, self.variables, frame)
        if self.variables.state:
            raise DataError(
                f"formula {f.text!r} uses a transform fitted to a whole column (poly, scale, factor or "
                "cut of a computed value): it cannot be fitted partition by partition; compute the "
                "column first (e.g. with map_partitions, or astype('category') for a factor)"
            )
        mark_fitted(self.variables.state)
        self.labels = [g.labels() for g in groups]
        self.prototype = frame.iloc[:0]

    # -- one partition ---------------------------------------------------------------------------
    def _frame(self, part: pd.DataFrame) -> pd.DataFrame:
        """The partition's model columns, categorical variables cast to the whole data's levels."""
        frame = part[self.columns.variables].copy()
        for role, arg in (("weights", self.weights), ("offset", self.offset)):
            if arg is not None:
                values = part[arg]
                if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                    raise DataError(f"{role} must be numeric, not {values.dtype}")
                frame[f".{role}"] = values.astype(float)
        for c in self.columns.categorical:
            values = frame[c].astype(str) if c in self.columns.factors else frame[c]
            cat = pd.Categorical(values, categories=self.levels[c])
            if (cat.codes < 0).sum() != values.isna().sum():
                raise DataError(
                    f"a partition has a value of {c!r} that is not among its levels (the column's categories "
                    "changed between partitions)"
                )
            frame[c] = cat
        return frame

    def materialise(self, part: pd.DataFrame) -> tuple:
        """(the partition's Design -- its complete rows, the whole data's columns and levels,
        the terms in :attr:`order` --, the number of rows dropped); the Design is None when no
        row is complete."""
        f = self.columns.formula
        frame = self._frame(part)
        n_in = len(frame)
        frame = frame.loc[frame.notna().all(axis=1).to_numpy()]
        parts = (f.fixed, *f.offsets, *(b.lhs for b in f.bars), f.response)
        if len(frame):
            computed_na = self.variables.missing_rows(frame, parts)
            if computed_na.any():
                frame = frame.loc[~computed_na]
        if len(frame) == 0:
            return None, n_in
        y = response_values(f, frame, self.variables)
        X = np.asarray(self.fixed_spec.get_model_matrix(frame), dtype=float)
        if not np.isfinite(X).all():
            raise DataError(f"infinite values in the fixed-effects matrix (formula {f.text!r})")
        w = frame[".weights"].to_numpy(dtype=float) if self.weights is not None else None
        if w is not None and np.any(w <= 0):
            bad = "negative" if np.any(w < 0) else "zero"
            raise DataError(f"weights must be positive: {int(np.sum(w <= 0))} are {bad}")
        off = frame[".offset"].to_numpy(dtype=float) if self.offset is not None else None
        if f.offsets:
            off = (0.0 if off is None else off) + formula_offset(f, self.variables, frame)
            if not np.all(np.isfinite(off)):
                raise DataError(f"the offset of formula {f.text!r} has infinite values")
        terms = []
        for i in self.order:
            b = f.bars[i]
            Xr = np.asarray(self.term_specs[i].get_model_matrix(frame), dtype=float)
            codes = self.groups[i].codes(frame, b.group_vars)
            terms.append(
                ReTerm(
                    b.group_name,
                    deparse(b.lhs),
                    codes,
                    self.labels[i],
                    Xr,
                    self.term_cnames[i],
                    self.term_specs[i],
                    tuple(b.group_vars),
                )
            )
        design = Design(
            f,
            y,
            X,
            self.xnames_all,
            terms,
            self.fixed_spec,
            frame,
            n_in - len(frame),
            frame.index,
            w,
            off,
            self.weights,
            self.offset,
            [],
            None,
            self.variables,
        )
        return design, n_in - len(frame)

    def with_groups(self, groups: list, order) -> "PartitionSpec":
        """This spec with other levels of the grouping factors and another order of the terms
        (after unused levels are dropped)."""
        other = object.__new__(PartitionSpec)
        other.__dict__.update(self.__dict__)
        other.groups, other.order = list(groups), list(order)
        other.labels = [g.labels() for g in groups]
        return other

    def rowless_design(self, n: int, n_dropped: int, x_keep: list) -> "PartitionedDesign":
        """The design of the whole data, without its rows."""
        f = self.columns.formula
        terms = []
        for i in self.order:
            b = f.bars[i]
            k = len(self.term_cnames[i])
            terms.append(
                ReTerm(
                    b.group_name,
                    deparse(b.lhs),
                    np.empty(0, dtype=np.int64),
                    self.labels[i],
                    np.empty((0, k)),
                    self.term_cnames[i],
                    self.term_specs[i],
                    tuple(b.group_vars),
                )
            )
        xnames = [self.xnames_all[j] for j in x_keep]
        dropped = [nm for j, nm in enumerate(self.xnames_all) if j not in set(x_keep)]
        return PartitionedDesign(
            f,
            None,  # type: ignore[arg-type]  # no rows: a partitioned design has no y
            np.empty((0, len(xnames))),
            xnames,
            terms,
            self.fixed_spec,
            self.prototype,
            n_dropped,
            None,
            None,
            None,
            self.weights,
            self.offset,
            dropped,
            list(x_keep),
            self.variables,
            nrows=n,
            spec=self,
        )


@dataclass
class PartitionedDesign(Design):
    """The design of data held in partitions: names, levels, specs and sizes, no rows
    (``y``, ``row_index``, ``weights`` and ``offset`` are None; ``X`` and the terms' matrices
    have no rows).  ``spec`` materialises any partition again."""

    nrows: int = 0
    spec: PartitionSpec | None = field(default=None, repr=False)
    fingerprint: tuple | None = None  # (n, sum y, sum y^2): whether two fits saw the same data

    @property
    def n(self) -> int:
        return self.nrows

    @property
    def p(self) -> int:
        return len(self.xnames)

    @property
    def partition_spec(self) -> PartitionSpec:
        """The specs that materialise a partition (always set for a fitted partitioned design)."""
        assert self.spec is not None
        return self.spec

    def levels_of(self, name: str) -> set | None:
        spec = self.partition_spec
        if name in spec.columns.categorical:
            return set(level_labels(spec.levels[name]))
        return None
