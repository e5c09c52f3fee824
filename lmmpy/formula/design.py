"""From formula and data to the model's matrices: y, X (dense) and the random-effects terms.

Each random-effects term ``(lhs | g)`` becomes a :class:`ReTerm`: the grouping factor's
integer codes and level labels, and the dense n x k model matrix of ``lhs``.  Its block of
Z (n x l k, sparse) has column ``level * k + j`` -- the levels outer, the term's columns
inner, as in lme4 -- so that Lambda's block for the term is ``I_l (x) T`` with T the k x k
lower-triangular template filled from theta.

The formula's variables are evaluated as R evaluates them (:mod:`lmmpy.formula.rlang`): a
column name is a column; any other expression (``log(x)``, ``I(Days > 4)``, ``poly(x, 2)``,
``cut(x, 3)``) is one variable, computed by lmmpy from the data and the formula's
environment and handed to formulaic under a placeholder name; formulaic then builds the
model matrix (intercept, contrasts, interactions), and the columns get R's names.
Date columns are numbers, as in R: ``datetime.date`` values days since 1970-01-01,
datetime64 values (and ``datetime.datetime``) seconds since 1970-01-01 UTC.
"""

from __future__ import annotations

import datetime
import keyword
import re
import sys
import warnings
from collections import ChainMap
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from ..errors import DataError, FormulaError, LmmError
from .bars import LmerFormula, parse_formula
from .frames import as_pandas
from .parser import FORMULA_OPERATORS, PAREN, Call, Kw, Name, Node, Num, Str, deparse, walk
from .rlang import Matrix, column_value, evaluate, mark_fitted
from .theta_layout import tril_positions

# the base of every formula's environment (behind the caller's variables); also formulaic's
# context for to_formulaic's translations
CONTEXT = {
    "log": np.log,
    "log10": np.log10,
    "log2": np.log2,
    "log1p": np.log1p,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "np": np,
}
COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3  # pandas 3 always copies on write
_FACTOR_FUNS = {"factor", "as.factor", "ordered", "as.ordered"}
_OPERATORS = (PAREN, "~", "|", "||", "+", "-", "*", "/", ":", "^", "%in%")


def to_formulaic(node: Node, in_call: bool = False) -> str:
    """Write an R formula tree in formulaic's dialect: ``factor(x)`` -> ``C(x)``, and inside
    function calls (``I(x^2)``, ``log(x)``) R's ``^`` becomes Python's ``**``."""
    if isinstance(node, Name):
        return node.id if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", node.id) else f"`{node.id}`"
    if isinstance(node, Num):
        return node.text
    if isinstance(node, Str):
        return repr(node.value)
    if isinstance(node, Kw):
        return f"{node.name}={to_formulaic(node.value, in_call)}"
    if node.op == PAREN:
        return f"({to_formulaic(node.args[0], in_call)})"
    if len(node.args) == 2 and node.op in ("~", "|", "||", "+", "-", "*", "/", ":", "^", "%in%"):
        op = "**" if (in_call and node.op == "^") else ":" if node.op == "%in%" else node.op
        a, b = (to_formulaic(x, in_call) for x in node.args)
        return f"{a} {op} {b}" if op not in (":",) else f"{a}:{b}"
    if node.op in ("+", "-") and len(node.args) == 1:
        return f"{node.op}{to_formulaic(node.args[0], in_call)}"
    name = "C" if node.op in _FACTOR_FUNS else node.op
    return f"{name}({', '.join(to_formulaic(a, True) for a in node.args)})"


def factor_expressions(node: Node, out: list[str] | None = None) -> list[str]:
    """The model's "variables" as R's terms() lists them: names and function calls, in order of
    first appearance, written as formulaic names them."""
    out = [] if out is None else out
    if isinstance(node, Name) or (isinstance(node, Call) and node.op not in _OPERATORS):
        expr = to_formulaic(node)
        if expr not in out:
            out.append(expr)
    elif isinstance(node, Call):
        for a in node.args:
            factor_expressions(a, out)
    return out


def r_name(
    name: str,
    order: Sequence[str | None] = (),
) -> str:
    """formulaic's column name -> R's: ``Intercept`` -> ``(Intercept)``, ``g[T.b]`` -> ``gb``,
    ``I(x ** 2)`` -> ``I(x^2)``, ``C(x)`` -> ``factor(x)``; the parts of an interaction put in
    the order their variables first appear in the formula (``order``), as R labels them."""
    if name == "Intercept":
        return "(Intercept)"
    parts = []
    for part in name.split(":"):
        m = re.match(r"^(.*?)(?:\[(?:T\.)?([^\]]*)\])?$", part)
        assert m is not None  # the pattern matches every string
        expr, level = m.group(1), m.group(2) or ""
        rank = order.index(expr) if expr in order else len(order)
        expr = expr.replace(" ** ", "^").replace("**", "^")
        expr = re.sub(r"\bC\(", "factor(", expr)
        parts.append((rank, expr + level))
    parts.sort(key=lambda rp: rp[0])
    return ":".join(p for _, p in parts)


def names_in(node: Node, out: list[tuple[str, bool]], in_call: bool = False) -> None:
    """Append to ``out`` the variable names of a formula tree, in order, as (name, whether it
    sits inside a function call); what the design and prediction on new data read."""
    stack = [(node, in_call)]
    while stack:
        node, in_call = stack.pop()
        if isinstance(node, Name):
            out.append((node.id, in_call))
        elif isinstance(node, Kw):
            stack.append((node.value, True))
        elif isinstance(node, Call):
            is_fun = node.op not in _OPERATORS
            stack.extend((a, in_call or is_fun) for a in reversed(node.args))


def caller_env(depth: int = 1) -> Mapping:
    """The variables of the code ``depth`` frames above the caller of this function: what an
    R formula sees of its environment (statsmodels' formula API captures it the same way)."""
    frame = sys._getframe(depth + 1)
    return ChainMap(frame.f_locals, frame.f_globals)


def check_env(env: Any) -> Mapping:
    if not isinstance(env, Mapping):
        raise LmmError(
            f"env must be a mapping of names to values (such as a dict or locals()), not {type(env).__name__}"
        )
    return env


def _python_name(name: str) -> str:
    """A column name as formulaic code reads it: bare if it can be, else in backticks."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and not keyword.iskeyword(name)
    return name if plain else f"`{name}`"


def dates_as_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """R's numbers for dates: datetime64 columns (R's POSIXct) as seconds since 1970-01-01
    UTC, columns of ``datetime.date`` (R's Date) as days since then; other columns as they are."""
    out = None
    for j, col in enumerate(frame.columns):
        values = frame.iloc[:, j]
        if pd.api.types.is_datetime64_any_dtype(values):
            epoch = pd.Timestamp("1970-01-01", tz=values.dt.tz)
            number = (values - epoch) / pd.Timedelta(seconds=1)
        elif values.dtype == object:
            first = next((v for v in values if v is not None and v == v), None)
            if isinstance(first, datetime.datetime):
                stamps = pd.to_datetime(values, utc=True)
                number = (stamps - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
            elif isinstance(first, datetime.date):
                epoch = datetime.date(1970, 1, 1)
                number = pd.Series(
                    [float((v - epoch).days) if isinstance(v, datetime.date) else np.nan for v in values],
                    index=values.index,
                )
            else:
                continue
        else:
            continue
        if out is None:
            out = frame.copy()
        out.isetitem(j, number.astype(float))
    return frame if out is None else out


def first_of_duplicated_columns(data: pd.DataFrame, used: Sequence[str] = ()) -> pd.DataFrame:
    """``data`` with only the first of each set of same-named columns, as R's model.frame
    takes the first; a warning names the duplicated columns the model uses."""
    dup = data.columns.duplicated()
    if not dup.any():
        return data
    names = [c for c in dict.fromkeys(data.columns[dup]) if c in set(used)]
    if names:
        warnings.warn(
            f"the data have several columns named {', '.join(map(repr, names))}: the first of each is used, as in R",
            UserWarning,
            stacklevel=4,
        )
    return data.loc[:, ~dup]


@dataclass
class _Variable:
    """One model variable that is an R expression: formulaic calls ``name(columns...)``."""

    node: object
    label: str  # R's name for it: deparse(node)
    name: str  # the placeholder function formulaic calls
    columns: list  # the data columns it reads, the placeholder's arguments

    @property
    def code(self) -> str:
        return f"{self.name}({', '.join(_python_name(c) for c in self.columns)})"


class ModelVariables:
    """The variables of one model and how formulaic sees them.

    Column names are passed to formulaic as they are; every other variable (an R expression)
    becomes a placeholder function ``__lmm_v<i>__`` in formulaic's context, called with the
    data columns the expression reads and returning its value by :func:`rlang.evaluate`.
    poly/scale/factor/cut keep their fitting-data state in :attr:`state`, shared by all
    parts of the model and reused on new data.  ``labels`` maps formulaic's name of each
    variable to R's."""

    def __init__(
        self, formula_text: str, columns: Sequence[str], env: Mapping, anchor: str, names: Sequence[str] | None = None
    ) -> None:
        self.formula_text = formula_text
        self.columns = list(columns)
        if names is not None:  # keep only what the formula names: the caller's frame is not kept alive
            env = {nm: env[nm] for nm in names if nm in env}
        # ChainMap wants mutable maps for its writes; lmmpy only reads the environment
        self.env: ChainMap[str, Any] = ChainMap(cast(MutableMapping[str, Any], env), CONTEXT)
        self.anchor = anchor  # a column giving the number of rows to expressions that read none
        self.context: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self._by_label: dict[str, _Variable] = {}
        self.labels: dict[str, str] = {}  # formulaic's expression -> R's label

    # ---- registering variables ------------------------------------------------------
    def variable_code(self, node: Node) -> str:
        """formulaic's code for the model variable ``node`` (registering it)."""
        if isinstance(node, Name) and node.id in self.columns:
            code, label = _python_name(node.id), node.id
        elif isinstance(node, Call) and node.op == "C":  # formulaic's contrasts, passed through
            code = to_formulaic(node)
            label = re.sub(r"\bC\(", "factor(", code.replace(" ** ", "^").replace("**", "^"))
        else:
            label = deparse(node)
            var = self._by_label.get(label)
            if var is None:
                used = [nm for nm, _ in _names_in_list(node) if nm in self.columns]
                var = _Variable(
                    node, label, f"__lmm_v{len(self._by_label)}__", list(dict.fromkeys(used)) or [self.anchor]
                )
                self._by_label[label] = var
                self.context[var.name] = self._transform(var)
            code = var.code
        self.labels.setdefault(_normalised(code), label)
        return code

    def _transform(self, var: _Variable) -> _Placeholder:
        return _Placeholder(self, var)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (fits go to worker processes): modules of the environment by name; values
        that cannot be pickled (a lambda) are left out."""
        import pickle

        env: dict[str, Any] = {}
        state = dict(self.__dict__)
        for nm, value in state["env"].maps[0].items():
            if isinstance(value, type(sys)):
                env[nm] = _Module(value.__name__)
                continue
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001 - anything pickle refuses
                continue
            env[nm] = value
        state["env"] = env
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        env = {nm: (v.load() if isinstance(v, _Module) else v) for nm, v in state.pop("env").items()}
        self.__dict__.update(state)
        self.env = ChainMap(env, CONTEXT)

    def evaluate(self, node: Node, values: Mapping[str, Any]) -> Any:
        """The R value of ``node`` given data columns ``values`` (name -> column)."""

        def lookup(name: str) -> Any:
            return column_value(values[name])

        return evaluate(node, lookup, self.env, self.state, self.formula_text)

    def formula_code(self, node: Node) -> str:
        """formulaic's formula for a formula part: its operators with variables' codes.
        Written with a stack, as deparse is, for formulas of thousands of terms."""
        out, todo = [], [node]
        while todo:
            n = todo.pop()
            if isinstance(n, str):
                out.append(n)
            elif isinstance(n, Num):
                out.append(n.text)
            elif isinstance(n, Call) and n.op == PAREN:
                todo += [")", n.args[0], "("]
            elif isinstance(n, Call) and n.op in ("|", "||", "~"):
                raise FormulaError(self.formula_text, f"unexpected {n.op!r} in {deparse(n)!r}")
            elif isinstance(n, Call) and n.op in FORMULA_OPERATORS and len(n.args) == 2:
                op = {"%in%": ":"}.get(n.op, n.op)  # R's a %in% b is the interaction a:b
                todo += [n.args[1], op if op == ":" else f" {op} ", n.args[0]]
            elif isinstance(n, Call) and n.op in ("+", "-") and len(n.args) == 1:
                todo += [n.args[0], n.op]
            elif isinstance(n, (Str, Kw)):
                raise FormulaError(self.formula_text, f"{deparse(n)} is not a model term")
            else:
                out.append(self.variable_code(n))
        return "".join(out)

    def order(self, node: Node) -> list[str | None]:
        """R labels of the formula part's variables, in order of first appearance."""
        out: list[str | None] = []
        for n in formula_variables(node):
            label = self.labels.get(_normalised(self.variable_code(n)))
            if label not in out:
                out.append(label)
        return out

    # ---- reading formulaic's output -------------------------------------------------
    def column_name(self, name: str, order: Sequence[str | None]) -> str:
        """R's name of a formulaic model-matrix column (``__lmm_v0__(Days)[T.TRUE]`` ->
        ``I(Days > 4)TRUE``): the variables' labels with their levels, in formula order."""
        parts = self._split(name)
        if parts is None:
            return r_name(name, order)
        if parts == [("1", None)]:
            return "(Intercept)"
        ranked = []
        for expr, level in parts:
            label = self.labels.get(expr, expr)
            if level is not None and level.startswith("T."):
                level = level[2:]
            rank = order.index(label) if label in order else len(order)
            ranked.append((rank, label + (level or "")))
        ranked.sort(key=lambda rp: rp[0])
        return ":".join(p for _, p in ranked)

    def term_label(self, term: Any, order: Sequence[str | None]) -> str:
        """R's label of a formulaic term (its variables' labels in formula order)."""
        labels = [self.labels.get(f.expr, f.expr) for f in term.factors]
        return ":".join(sorted(labels, key=lambda lb: order.index(lb) if lb in order else len(order)))

    def _split(self, name: str) -> list[tuple[str, str | None]] | None:
        """A column name as (variable expression, level or None) parts, or None."""
        if name == "Intercept":
            return [("1", None)]
        exprs = sorted(self.labels, key=len, reverse=True)
        parts: list[tuple[str, str | None]] = []
        p = 0
        while p < len(name):
            expr = next((e for e in exprs if name.startswith(e, p)), None)
            if expr is None:
                return None
            p += len(expr)
            level: str | None = None
            if p < len(name) and name[p] == "[":
                q = p + 1  # the level ends at a ']' that ends the name or precedes ':' and a variable
                while True:
                    q = name.find("]", q)
                    if q < 0:
                        return None
                    if q + 1 == len(name) or (name[q + 1] == ":" and any(name.startswith(e, q + 2) for e in exprs)):
                        break
                    q += 1
                level, p = name[p + 1 : q], q + 1
            parts.append((expr, level))
            if p < len(name):
                if name[p] != ":":
                    return None
                p += 1
        return parts

    # ---- data -----------------------------------------------------------------------
    def prepare(self, data: pd.DataFrame) -> pd.DataFrame:
        """Data as formulaic gets them: the first of same-named columns, dates as numbers."""
        return dates_as_numbers(first_of_duplicated_columns(data))

    def missing_rows(self, frame: pd.DataFrame, nodes: Sequence[Node]) -> np.ndarray:
        """Rows where a variable that is an R expression is NA (cut() outside its breaks,
        log of a negative number, factor() of a value not among its levels...): R's
        model.frame drops them as it drops rows with missing data."""
        computed = [
            n
            for node in nodes
            for n in formula_variables(node)
            if not (isinstance(n, Name) and n.id in self.columns or isinstance(n, Call) and n.op == "C")
        ]
        missing = np.zeros(len(frame), dtype=bool)
        if not computed:  # only columns: their NA rows are gone already
            return missing
        saved, self.state = self.state, {}
        try:
            prepared = self.prepare(frame)
            values = {c: prepared[c] for c in self.columns if c in prepared.columns}
            for n in computed:
                missing |= _is_missing(self.evaluate(n, values), len(frame))
            return missing
        finally:
            self.state = saved

    def plain_matrix(self, node: Node, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
        """The model matrix of a formula part that is only numeric columns added together and
        the intercept (``1 + Days``, ``0 + x + z``), built directly as formulaic builds it
        (the intercept first, then the columns in formula order) with R's names; None for any
        other part, which formulaic builds.  (formulaic's parsing and materialising is most of
        the set-up of a small model.)"""
        terms: list[tuple[str, Any]] = []
        if not _plain_terms(node, "+", terms):
            return None
        intercept, columns, series = True, [], []
        for sign, term in terms:
            if isinstance(term, Num):
                if term.text not in ("0", "1") or (sign == "-" and term.text == "0"):
                    return None
                intercept = sign == "+" and term.text == "1"
            elif sign == "+" and term.id in columns:  # a repeated term is one term, as in R
                continue
            elif sign == "+" and term.id in frame.columns and term.id in self.columns:
                col = frame[term.id]  # once: a pandas column lookup costs ~20 microseconds
                if not (
                    isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf" and _python_name(term.id) == term.id
                ):
                    return None
                columns.append(term.id)
                series.append(col)
            else:
                return None
        if sum(isinstance(t, Num) for _, t in terms) > 1 or (not intercept and not columns):
            return None
        n = len(frame)
        M = np.empty((n, intercept + len(columns)))
        if intercept:
            M[:, 0] = 1.0
        for j, col in enumerate(series):
            M[:, intercept + j] = col.to_numpy(dtype=float)
        return M, ["(Intercept)"] * intercept + columns

    def model_matrix(
        self, node: Node, frame: pd.DataFrame, what: str, prefix: str = "", full_rank: bool = True
    ) -> tuple[Any, list[str]]:
        """formulaic's model matrix of a formula part and R's column names."""
        code = prefix + self.formula_code(node)
        try:
            mm = model_matrix(
                code, self.prepare(frame), context=self.context, na_action="raise", ensure_full_rank=full_rank
            )
        except FormulaicError as e:
            cause = e.__cause__
            if isinstance(cause, LmmError):
                raise cause from None
            raise FormulaError(
                self.formula_text, f"cannot build the {what} from {deparse(node)!r}: {_formulaic_message(e, self)}"
            ) from None
        except LmmError:
            raise
        except Exception as e:  # noqa: BLE001 - pandas, numpy or formulaic, never to the user raw
            raise FormulaError(
                self.formula_text, f"cannot build the {what} from {deparse(node)!r}: {type(e).__name__}: {e}"
            ) from None
        order = self.order(node)
        return mm, [self.column_name(c, order) for c in mm.columns]


class _Placeholder:
    """The function formulaic calls for one R-expression variable: its value from the columns."""

    def __init__(self, variables: ModelVariables, var: _Variable) -> None:
        self.variables, self.var = variables, var

    def __call__(self, *cols: Any) -> Any:
        var = self.var
        values = dict(zip(var.columns, cols))
        index = cols[0].index if isinstance(cols[0], pd.Series) else None
        value = self.variables.evaluate(var.node, values)
        return _model_column(value, len(cols[0]), index, var.label)


@dataclass(frozen=True)
class _Module:
    name: str

    def load(self) -> Any:
        import importlib

        return importlib.import_module(self.name)


def _formulaic_message(error: Exception, variables: ModelVariables) -> str:
    """formulaic's message with R's labels for the placeholders."""
    text = str(error)
    for var in variables._by_label.values():
        text = text.replace(_normalised(var.code), var.label).replace(var.code, var.label)
    return text


def _plain_terms(node: Node, sign: str, out: list) -> bool:
    """Collect the (sign, term) of a sum of names and numbers into ``out``, in formula order;
    False when the part has anything else (interactions, calls, parentheses, a subtracted
    sum...).  With a stack: formulas may have thousands of terms."""
    stack = [(node, sign)]
    while stack:
        n, sg = stack.pop()
        if isinstance(n, (Name, Num)):
            out.append((sg, n))
        elif isinstance(n, Call) and n.op in ("+", "-") and len(n.args) == 1:
            stack.append((n.args[0], sg if n.op == "+" else ("-" if sg == "+" else "+")))
        elif isinstance(n, Call) and n.op in ("+", "-") and len(n.args) == 2 and sg == "+":
            stack += [(n.args[1], "+" if n.op == "+" else "-"), (n.args[0], "+")]
        else:
            return False
    return True


def _names_in_list(node: Node) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    names_in(node, out)
    return out


def formula_variables(node: Node) -> list[Node]:
    """The model variables of a formula part (names and calls that are not formula
    operators), in order of appearance."""
    out = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Call) and n.op in FORMULA_OPERATORS:
            stack.extend(reversed(n.args if n.op != "^" else n.args[:1]))
        elif isinstance(n, (Name, Call)):
            out.append(n)
    return out


_NORMALISED: dict[str, str] = {}


def _normalised(code: str) -> str:
    """formulaic's own spelling of one variable's code (the text its column names start with)."""
    if code not in _NORMALISED:
        try:
            exprs = [f.expr for term in Formula(code) for f in term.factors if f.expr != "1"]
        except Exception:  # noqa: BLE001 - formulaic refuses it: keep the code as it is
            exprs = []
        _NORMALISED[code] = exprs[0] if len(exprs) == 1 else code
    return _NORMALISED[code]


def _is_missing(value: Any, n: int) -> np.ndarray:
    if isinstance(value, Matrix):
        out = np.zeros(n, dtype=bool)
        for col in value.columns.values():
            out |= _is_missing(col, n)
        return out
    if isinstance(value, pd.Categorical):
        return np.asarray(value.codes) < 0 if len(value) == n else np.zeros(n, dtype=bool)
    arr = np.asarray(value)
    if arr.ndim == 0 or arr.shape[0] != n:
        return np.zeros(n, dtype=bool)
    if arr.dtype == object:
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in arr])
    if arr.dtype.kind in "fc":
        return np.isnan(arr)
    return np.zeros(n, dtype=bool)


def _model_column(value: Any, n: int, index: Any, label: str) -> Any:
    """A variable's value as formulaic takes it: a numeric Series, a categorical Series (R's
    factors; logical values are factors with levels FALSE, TRUE, strings factors with sorted
    levels), or a dict of numeric Series for a matrix such as poly()'s."""
    if isinstance(value, Matrix):
        return {k: _model_column(v, n, index, label) for k, v in value.columns.items()}
    if value is None:
        raise DataError(f"{label} is NULL")
    if isinstance(value, pd.Categorical):
        if len(value) != n:
            raise DataError(f"{label} has {len(value)} values for {n} rows")
        return pd.Series(value, index=index)
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr.item(), dtype=arr.dtype if arr.dtype != object else object)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{label} has {arr.shape[0] if arr.ndim else 1} values for {n} rows")
    if arr.dtype == bool:
        codes = arr.astype(np.int64)
        return pd.Series(pd.Categorical.from_codes(codes, categories=["FALSE", "TRUE"]), index=index)
    if arr.dtype == object or arr.dtype.kind in "US":
        labels = np.array([v if isinstance(v, str) else None for v in arr], dtype=object)
        levels = sorted({v for v in labels if v is not None})
        return pd.Series(pd.Categorical(labels, categories=levels), index=index)
    return pd.Series(arr.astype(float), index=index)


class FormulaSpec:
    """formulaic's ModelSpec of one formula part, with the model's variables: new data are
    materialised with the same R functions, environment and fitted state.

    A part the design built without formulaic (:meth:`ModelVariables.plain_matrix`) gets its
    ModelSpec on first use, from the part and the fitting rows (``recipe``): the fit itself never
    needs it, prediction on new data and the terms of anova do."""

    def __init__(self, spec: Any, variables: ModelVariables, recipe: tuple | None = None) -> None:
        self._spec, self.variables, self._recipe = spec, variables, recipe

    @property
    def spec(self) -> Any:
        if self._spec is None:
            assert self._recipe is not None
            node, frame, what, prefix = self._recipe
            self._spec = self.variables.model_matrix(node, frame, what, prefix=prefix)[0].model_spec
            self._recipe = None
        return self._spec

    # context: the model's own, whatever the caller passes
    def get_model_matrix(self, data: pd.DataFrame, context: Any = None, **kwargs: Any) -> Any:
        return self.spec.get_model_matrix(self.variables.prepare(data), context=self.variables.context, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the rest of formulaic's ModelSpec (term_indices, ...)
        if name.startswith("_") or name in ("spec", "variables"):
            raise AttributeError(name)
        return getattr(self.spec, name)


@dataclass
class ReTerm:
    """One random-effects term: grouping factor and the model matrix of its left-hand side."""

    group: str  # the grouping factor's name as lme4 prints it ("cask:batch")
    lhs: str  # the term's own formula
    codes: np.ndarray  # (n,) level index of each observation
    levels: list  # level labels
    X: np.ndarray  # (n, k) model matrix of the term
    cnames: list  # its column names (R style)
    spec: Any = field(repr=False, default=None)  # formulaic spec of lhs
    group_vars: tuple = ()

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def k(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.nlevels * self.k

    @property
    def ntheta(self) -> int:
        return self.k * (self.k + 1) // 2

    def Z(self) -> sp.csc_matrix:
        """This term's n x (l k) block of Z."""
        n, k = self.X.shape
        # row i holds its level's k columns, in order: CSR directly (no triplets to sort)
        cols = (self.codes[:, None] * k + np.arange(k)).ravel()
        indptr = np.arange(0, n * k + 1, k)
        return sp.csr_matrix(
            (np.ascontiguousarray(self.X, dtype=float).ravel(), cols, indptr), shape=(n, self.q)
        ).tocsc()

    def theta_names(self) -> list:
        """lme4's names: lower triangle, column by column."""
        return [
            f"{self.group}.{self.cnames[i]}" if i == j else f"{self.group}.{self.cnames[i]}.{self.cnames[j]}"
            for i, j in tril_positions(self.k)
        ]


@dataclass
class Design:
    formula: LmerFormula
    y: np.ndarray
    X: np.ndarray
    xnames: list
    reterms: list  # ordered as lme4 orders them (decreasing number of levels)
    fixed_spec: Any  # FormulaSpec
    frame: pd.DataFrame  # the rows used, the variables used
    n_dropped: int = 0
    row_index: Any = None  # index labels of the rows used
    weights: np.ndarray | None = None  # prior weights (residual variance sigma^2 / w), None for all 1
    offset: np.ndarray | None = None  # known part of the linear predictor, None for 0
    weights_name: str | None = None
    offset_name: str | None = None
    dropped_columns: list = field(default_factory=list)  # aliased columns of X, dropped
    x_keep: list[int] | None = None  # indices of the kept columns among the formula's (for new data)
    variables: Any = None  # ModelVariables: R's evaluation of the formula's variables
    trials: np.ndarray | None = None  # binomial trials of a cbind(successes, failures) response (y their proportion)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return sum(t.q for t in self.reterms)

    def Z(self) -> sp.csc_matrix:
        return sp.hstack([t.Z() for t in self.reterms], format="csc")

    def theta_names(self) -> list:
        return [nm for t in self.reterms for nm in t.theta_names()]

    def theta_lower(self) -> np.ndarray:
        return np.array([0.0 if i == j else -np.inf for t in self.reterms for i, j in tril_positions(t.k)])

    def theta_start(self) -> np.ndarray:
        return np.where(self.theta_lower() == 0.0, 1.0, 0.0)

    def formula_offset(self, data: pd.DataFrame) -> Any:
        """The sum of the formula's offset(x) terms on ``data`` (0 if it has none)."""
        return formula_offset(self.formula, self.variables, data)

    def levels_of(self, name: str) -> set | None:
        """The level labels of a categorical (or string) variable of the data, None for others
        (prediction checks new data against them)."""
        col = self.frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col):
            return set(level_labels(col.unique()))
        return None

    def fixed_terms(self) -> list:
        """(R's label, column indices in the formula's full X) of each fixed-effects term
        but the intercept."""
        order = self.variables.order(self.formula.fixed)
        return [
            (self.variables.term_label(t, order), idx)
            for t, idx in self.fixed_spec.term_indices.items()
            if str(t) != "1"
        ]

    def fixed_matrix_all_levels(self) -> tuple[np.ndarray, list[str]]:
        """The fixed-effects matrix with every level of every factor its own column (formulaic's
        ensure_full_rank=False) on the fitting rows, and R's names of its columns."""
        mm, names = self.variables.model_matrix(self.formula.fixed, self.frame, "fixed-effects matrix", full_rank=False)
        return np.asarray(mm, dtype=float), names


def _materialise(
    formula_text: str, node: Node, frame: pd.DataFrame, what: str, variables: ModelVariables, prefix: str = ""
) -> tuple[np.ndarray, list[str], FormulaSpec]:
    plain = variables.plain_matrix(node, frame) if not prefix else None
    if plain is not None:
        M, names = plain
        spec = FormulaSpec(None, variables, recipe=(node, frame, what, prefix))
    else:
        mm, names = variables.model_matrix(node, frame, what, prefix=prefix)
        M = np.asarray(mm, dtype=float)
        spec = FormulaSpec(mm.model_spec, variables)
    bad = [nm for nm, ok in zip(names, np.isfinite(M).all(axis=0)) if not ok]
    if bad:
        raise DataError(f"infinite values in {', '.join(map(repr, bad))} of the {what} (formula {formula_text!r})")
    return M, names, spec


def formula_offset(f: LmerFormula, variables: ModelVariables, data: pd.DataFrame) -> Any:
    """The sum of the offset(x) terms of formula ``f`` evaluated on ``data``."""
    if not f.offsets:
        return 0.0
    prepared = variables.prepare(data)
    values = {c: prepared[c] for c in variables.columns if c in prepared.columns}
    total = np.zeros(len(data))
    for node in f.offsets:
        value = variables.evaluate(node.args[0], values)
        if isinstance(value, (pd.Categorical, Matrix)) or np.asarray(value).dtype.kind not in "biuf":
            raise DataError(f"the offset {deparse(node)} must be numeric")
        total = total + np.asarray(value, dtype=float)
    return total


def level_labels(values: Any) -> list:
    """Level labels as R prints them (1.0 -> '1')."""
    out = []
    for v in values:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.append(str(v))
    return out


def grouping_factor(frame: pd.DataFrame, names: Sequence[str]) -> tuple[np.ndarray, list]:
    """(codes, levels) of a column or of the interaction of several (first one slowest);
    unused levels dropped, as factor() does in lme4."""
    codes: np.ndarray | None = None
    labels: list = []
    for nm in reversed(names):  # build right to left so the first factor varies slowest
        col = frame[nm]
        if isinstance(col.dtype, pd.CategoricalDtype) and (col.array.codes >= 0).all():
            # unused categories dropped, the others' order kept (remove_unused_categories)
            cc = col.array.codes
            cats = col.array.categories
            used = np.bincount(cc, minlength=len(cats)) > 0
            if not used.all():
                cc = (np.cumsum(used) - 1)[cc]
                cats = cats[used]
            lv = level_labels(cats)
        elif isinstance(col.dtype, pd.CategoricalDtype):
            c = col.cat.remove_unused_categories()
            cc, lv = c.cat.codes.to_numpy(), level_labels(c.cat.categories)
        else:
            uniq, cc = np.unique(col.to_numpy(), return_inverse=True)
            lv = level_labels(uniq)
        cc = np.asarray(cc, dtype=np.int64)
        if codes is None:
            codes, labels = cc, lv
        else:
            combined = cc * len(labels) + codes
            used, codes = np.unique(combined, return_inverse=True)
            labels = [f"{lv[u // len(labels)]}:{labels[u % len(labels)]}" for u in used]
    assert codes is not None, "a grouping factor names at least one column"
    return codes.astype(np.int64), labels


def _complete_rows(frame: pd.DataFrame) -> np.ndarray:
    """The rows with no missing value (pandas' notna, column by column: for a small frame the
    frame-wide call costs more than the test itself)."""
    complete = np.ones(len(frame), dtype=bool)
    for _, values in frame.items():
        arr = values.to_numpy() if isinstance(values.dtype, np.dtype) else None
        if arr is not None and arr.dtype.kind in "iub":
            continue  # no NA in a numpy integer or boolean column
        if isinstance(values.dtype, pd.CategoricalDtype):
            complete &= values.array.codes >= 0
        elif arr is not None and arr.dtype.kind == "f":
            complete &= ~np.isnan(arr)
        else:
            complete &= values.notna().to_numpy()
    return complete


def lme4_term_order(nlevels: Sequence[int]) -> list[int]:
    """lme4's mkReTrms order of terms with these numbers of levels (formula order): if the
    numbers ever increase, rev(order(nl)); otherwise as written."""
    nl = list(nlevels)
    if any(b > a for a, b in zip(nl, nl[1:])):
        return sorted(range(len(nl)), key=lambda i: (nl[i], i))[::-1]
    return list(range(len(nl)))


def _order_terms(terms: list[ReTerm]) -> list[ReTerm]:
    return [terms[i] for i in lme4_term_order([t.nlevels for t in terms])]


def build_design(
    formula: str,
    data: pd.DataFrame,
    factors: Sequence[str] = (),
    weights: Any = None,
    offset: Any = None,
    env: Mapping | None = None,
    glm_response: bool = False,
) -> Design:
    """Parse ``formula`` and build the model's matrices from ``data`` (never modified).

    ``glm_response``: the response as R's glm families take it (:func:`_glm_response`):
    also booleans, a two-level factor or string column, and ``cbind(successes, failures)``.

    ``weights`` and ``offset`` are column names or arrays with one value per row of ``data``
    (by position), or pandas Series (by the data's index labels).
    ``env`` is the formula's environment, the mapping where names that are not columns of
    ``data`` are looked up (default: the caller's variables)."""
    env = caller_env(1) if env is None else check_env(env)
    try:
        return _build_design(formula, data, factors, weights, offset, env, glm_response)
    except RecursionError:
        raise FormulaError(getattr(formula, "text", str(formula)), "the formula nests too deeply") from None


def _referenced_names(f: LmerFormula) -> set[str]:
    """Every name the formula uses, as a variable or a function (with the head of a dotted
    one: np of np.log)."""
    out: set[str] = set()
    for node in walk(f.tree):
        for nm in [node.id] if isinstance(node, Name) else [node.op] if isinstance(node, Call) else []:
            out.update((nm, nm.split(".")[0]))
    return out


def _env_column(env: Mapping, name: str, n: int) -> np.ndarray | None:
    """A vector of the environment with one value per row (R's model.frame takes such
    variables beside the data's columns), or None."""
    if name not in env:
        return None
    value = env[name]
    if isinstance(value, (pd.Series, np.ndarray, list, tuple)) and np.ndim(value) == 1 and len(value) == n:
        return np.asarray(value)
    return None


def _build_design(
    formula: str,
    data: pd.DataFrame,
    factors: Sequence[str],
    weights: Any,
    offset: Any,
    env: Mapping,
    glm_response: bool = False,
) -> Design:
    f = formula if isinstance(formula, LmerFormula) else parse_formula(formula)
    data = as_pandas(data)  # polars, pyarrow: converted once, here
    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise DataError(
            f"data must be a pandas DataFrame (or a polars DataFrame or pyarrow Table), not {type(data).__name__}"
        )
    if len(data) == 0:
        raise DataError("the data have no rows")

    used: list[tuple[str, bool]] = []
    for node in (f.response, f.fixed, *f.offsets, *(b.lhs for b in f.bars), *(b.group for b in f.bars)):
        names_in(node, used)
    data = first_of_duplicated_columns(data, [nm for nm, _ in used])
    variables: list[str] = []
    from_env: dict[str, np.ndarray] = {}
    for name, in_call in used:
        if name in data.columns:
            if name not in variables:
                variables.append(name)
        elif (vec := _env_column(env, name, len(data))) is not None:
            from_env.setdefault(name, vec)
        elif not in_call:
            cols = ", ".join(map(str, list(data.columns)[:20]))
            raise DataError(f"unknown column {name!r} in formula {f.text!r}; the data have: {cols}")
    for b in f.bars:
        for g in b.group_vars:
            if g not in data.columns and g not in from_env:
                raise DataError(f"unknown grouping column {g!r} in formula {f.text!r}")

    # by position (the names are unique now): pandas' label lookup costs more than the copy.
    # The user's frame is never modified: under copy-on-write (pandas >= 3) a frame that
    # shares its columns copies them when written; before it, the columns are copied here
    position = {c: i for i, c in enumerate(data.columns)}
    picked = [position[c] for c in variables]
    if picked == list(range(data.shape[1])):  # every column, in order: no take (a fifth of a small fit's design)
        frame = data.copy(deep=not COPY_ON_WRITE)
    else:
        frame = data.take(picked, axis=1)
        frame = frame if COPY_ON_WRITE else frame.copy()
    for name, vec in from_env.items():
        frame[name] = vec
    extra = {}
    for role, arg in (("weights", weights), ("offset", offset)):
        if arg is not None:
            extra[role] = _row_values(role, arg, data)
            frame[f".{role}"] = extra[role][0]
    for c in factors:
        if c not in frame.columns:
            raise DataError(f"--factor/factors names {c!r}, which the formula does not use")
        frame[c] = frame[c].astype(str).astype("category")
    complete = _complete_rows(frame)
    if not complete.all():
        frame = frame.loc[complete]
    if len(frame) == 0:
        raise DataError("no observations left after dropping rows with missing values")
    model_vars = ModelVariables(
        f.text,
        [c for c in frame.columns if c not in (".weights", ".offset")],
        env,
        frame.columns[0],
        names=sorted(_referenced_names(f)),
    )
    parts = (f.fixed, *f.offsets, *(b.lhs for b in f.bars))
    responses = _cbind_args(f.response) if glm_response else None
    computed_na = model_vars.missing_rows(frame, parts + (responses or (f.response,)))
    if computed_na.any():
        frame = frame.loc[~computed_na]
        if len(frame) == 0:
            raise DataError("no observations left after dropping rows with missing values")
    n_dropped = len(data) - len(frame)
    if len(frame) == 1:  # before the response's checks, which one value would fail misleadingly
        left = " after dropping rows with missing values" if n_dropped else ""
        raise DataError(f"the data have 1 observation{left}: grouping factors must have > 1 sampled level")

    y, trials = _glm_response(f, frame, model_vars) if glm_response else (_response(f, frame, model_vars), None)
    X, xnames, fixed_spec = _materialise(f.text, f.fixed, frame, "fixed-effects matrix", model_vars)
    X, xnames, dropped, x_keep = drop_aliased_columns(X, xnames)
    w = frame[".weights"].to_numpy(dtype=float) if "weights" in extra else None
    if w is not None and np.any(w <= 0):
        bad = "negative" if np.any(w < 0) else "zero"
        raise DataError(f"weights must be positive: {int(np.sum(w <= 0))} are {bad}")
    off = frame[".offset"].to_numpy(dtype=float) if "offset" in extra else None
    if f.offsets:  # offset(x) terms add to the offset argument, as in lme4
        off = (0.0 if off is None else off) + formula_offset(f, model_vars, frame)
        if not np.all(np.isfinite(off)):
            raise DataError(f"the offset of formula {f.text!r} has infinite values")

    terms = []
    for b in f.bars:
        Xr, cn, spec = _materialise(f.text, b.lhs, frame, f"random-effects term {b}", model_vars)
        if Xr.shape[1] == 0:
            raise FormulaError(f.text, f"the random-effects term {b} has no columns")
        codes, levels = grouping_factor(frame, b.group_vars)
        terms.append(ReTerm(b.group_name, deparse(b.lhs), codes, levels, Xr, cn, spec, tuple(b.group_vars)))
    terms = _order_terms(terms)
    # a generalized model may have one level per observation (observation-level random effects
    # are identified through the family's variance): glmerControl's check.nobs.vs.nlev/nRE
    check_terms(terms, len(y), per_observation_ok=glm_response)
    if X.shape[1] >= len(y):
        # X beta then fits y exactly: no residual degrees of freedom (REML's n - p = 0, ML's
        # deviance unbounded below as sigma -> 0); lme4 stops with "objective in x0 returns NA",
        # after the grouping factors' checks, as here
        aliased = f" of full rank (after dropping {len(dropped)} aliased)" if dropped else ""
        raise DataError(
            f"the fixed-effects model matrix has {X.shape[1]} columns{aliased} for {len(y)} "
            "observations: there must be fewer fixed effects than observations, or no residual "
            "variance is left to estimate"
        )
    mark_fitted(model_vars.state)
    return Design(
        f,
        y,
        X,
        xnames,
        terms,
        fixed_spec,
        frame,
        n_dropped,
        frame.index,
        w,
        off,
        extra.get("weights", (None, None))[1],
        extra.get("offset", (None, None))[1],
        dropped,
        x_keep,
        model_vars,
        trials,
    )


def _row_values(role: str, arg: Any, data: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """(values, printed name) of a weights/offset argument: a column name or an array."""
    if isinstance(arg, str):
        if arg not in data.columns:
            raise DataError(f"unknown {role} column {arg!r}")
        values, name = data[arg], arg
    elif isinstance(arg, pd.Series):  # matched to the data's rows by index label, as pandas does
        if len(arg) != len(data):
            raise DataError(f"{role} has {len(arg)} values but the data have {len(data)} rows")
        if not arg.index.equals(data.index):
            if not (arg.index.is_unique and data.index.is_unique and data.index.isin(arg.index).all()):
                raise DataError(
                    f"{role} is a pandas Series whose index does not match the data's index; "
                    f"give {role} the data's index (or pass an array, matched by position)"
                )
            arg = arg.reindex(data.index)
        values, name = arg.set_axis(data.index), role
    else:
        values, name = pd.Series(np.asarray(arg).ravel() if np.ndim(arg) else arg, copy=False), role
        if len(values) != len(data):
            raise DataError(f"{role} has {len(values)} values but the data have {len(data)} rows")
        values = pd.Series(values.to_numpy(), index=data.index)
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise DataError(f"{role} must be numeric, not {values.dtype}")
    if np.any(np.isinf(values.to_numpy(dtype=float))):
        raise DataError(f"{role} has infinite values")
    return values, name


def drop_aliased_columns(
    X: np.ndarray, names: list[str], tol: float = 1e-7
) -> tuple[np.ndarray, list[str], list[str], list[int]]:
    """Drop the columns of X that are linear combinations of earlier ones, as lme4 does
    (R's qr() with tol = 1e-7 keeps the first columns of full rank), with a warning naming them."""
    if X.shape[1] and X.shape[0] >= X.shape[1]:
        # the usual case first: every column far from the span of those before it (|R_jj| is
        # the norm of its part outside that span), so the loop below would keep them all
        R = np.linalg.qr(X, mode="r")
        if np.all(np.abs(np.diagonal(R)) > 100 * tol * np.linalg.norm(X, axis=0)):
            return X, list(names), [], list(range(X.shape[1]))
    keep, basis = [], np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        x = X[:, j]
        norm = np.linalg.norm(x)
        resid = x - basis @ (basis.T @ x) if basis.shape[1] else x
        resid = resid - basis @ (basis.T @ resid) if basis.shape[1] else resid  # re-orthogonalise
        rn = np.linalg.norm(resid)
        if norm > 0 and rn > tol * norm:
            keep.append(j)
            basis = np.column_stack([basis, resid / rn])
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    if dropped:
        k = len(dropped)
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {k} column"
            f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})",
            RankDeficientWarning,
            stacklevel=4,
        )
    return X[:, keep], [names[j] for j in keep], dropped, keep


class RankDeficientWarning(UserWarning):
    """Aliased fixed-effect columns were dropped."""


def _response(f: LmerFormula, frame: pd.DataFrame, variables: ModelVariables) -> np.ndarray:
    """The response: a column, or any R expression of columns (``Reaction - Days``,
    ``log(Reaction) - 1``: R's arithmetic, not the formula language); finite, not constant."""
    y = response_values(f, frame, variables)
    if np.ptp(y) == 0:
        raise DataError(f"the response {deparse(f.response)!r} is constant")
    return y


def response_values(f: LmerFormula, frame: pd.DataFrame, variables: ModelVariables) -> np.ndarray:
    """The response's values on ``frame`` (finite; a part of the rows may be constant)."""
    resp = f.response
    if isinstance(resp, Name) and resp.id in frame.columns:
        col = frame[resp.id]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            raise DataError(f"the response {resp.id!r} must be numeric, but its type is {col.dtype}")
        y = col.to_numpy(dtype=float)
    else:
        prepared = variables.prepare(frame)
        value = variables.evaluate(resp, {c: prepared[c] for c in variables.columns})
        arr = np.asarray(value) if not isinstance(value, (pd.Categorical, Matrix)) else None
        if arr is None or arr.dtype.kind not in "iuf":
            raise DataError(f"the response {deparse(resp)!r} must be numeric")
        if arr.ndim != 1 or len(arr) != len(frame):
            raise DataError(f"the response {deparse(resp)!r} must be a single numeric column")
        y = arr.astype(float)
    if not np.all(np.isfinite(y)):
        raise DataError(f"the response {deparse(resp)!r} has infinite (or NaN) values")
    return y


def _cbind_args(resp: Any) -> tuple | None:
    """The two columns of a ``cbind(successes, failures)`` response, or None."""
    if isinstance(resp, Call) and resp.op == "cbind":
        if len(resp.args) != 2 or any(isinstance(a, Kw) for a in resp.args):
            raise DataError(f"the response {deparse(resp)!r}: cbind() takes two columns, successes and failures")
        return tuple(resp.args)
    return None


def _glm_response(f: LmerFormula, frame: pd.DataFrame, variables: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, trials) as R's glm families take the response: numbers; booleans as 0/1; a factor or
    string column with two or more levels as 'not the first level' (R's binomial: the first
    level is failure); ``cbind(s, f)`` as y = s / (s + f) with trials s + f (y = 0 where there
    are no trials, as R sets it).  The family checks the range (:mod:`lmmpy.fit.pirls`)."""
    resp = f.response
    pair = _cbind_args(resp)
    prepared = variables.prepare(frame)
    values = {c: prepared[c] for c in variables.columns}

    def numeric(node: Any, what: str) -> np.ndarray:
        if isinstance(node, Name) and node.id in frame.columns:
            value = frame[node.id]
        else:
            value = variables.evaluate(node, values)
        if isinstance(value, pd.Categorical) or isinstance(value, Matrix):
            raise DataError(f"{what} {deparse(node)!r} must be numeric")
        arr = np.asarray(value)
        if arr.ndim != 1 or len(arr) != len(frame):
            raise DataError(f"{what} {deparse(node)!r} must be a single column")
        if arr.dtype.kind == "b":
            return arr.astype(float)
        if arr.dtype.kind not in "iuf":
            try:
                arr = arr.astype(float)
            except (TypeError, ValueError):
                raise DataError(f"{what} {deparse(node)!r} must be numeric") from None
        return arr.astype(float)

    if pair is not None:
        s, fl = (numeric(a, "the cbind() column") for a in pair)
        if np.any(s < 0) or np.any(fl < 0) or not np.all(np.isfinite(s) & np.isfinite(fl)):
            raise DataError(f"the response {deparse(resp)!r}: counts must be finite and non-negative")
        n = s + fl
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0)
        return y, n
    col = frame[resp.id] if isinstance(resp, Name) and resp.id in frame.columns else None
    if col is not None and (
        isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(col)
        or pd.api.types.is_string_dtype(col)
    ):
        levels = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(col.unique())
        if len(levels) < 2:
            raise DataError(f"the response {deparse(resp)!r} has only one level ({levels[0]!r}): it needs two")
        return (col != levels[0]).to_numpy(dtype=float), None
    y = numeric(resp, "the response")
    if not np.all(np.isfinite(y)):
        raise DataError(f"the response {deparse(resp)!r} has infinite (or NaN) values")
    return y, None


def check_terms(terms: list[ReTerm], n: int, per_observation_ok: bool = False) -> None:
    """lme4's checkNlevels and checkZdims."""
    for t in terms:
        if t.nlevels < 2:
            raise DataError(
                f"the grouping factor {t.group!r} has only {t.nlevels} level; "
                "grouping factors must have > 1 sampled level"
            )
        if per_observation_ok:
            continue
        if t.nlevels >= n:
            raise DataError(
                f"the grouping factor {t.group!r} has {t.nlevels} levels for {n} observations: "
                "the number of levels of each grouping factor must be < number of observations"
            )
        if t.q >= n:
            raise DataError(
                f"number of observations (={n}) <= number of random effects (={t.q}) "
                f"for term ({t.lhs} | {t.group}); the random-effects parameters and the "
                "residual variance are probably unidentifiable"
            )
