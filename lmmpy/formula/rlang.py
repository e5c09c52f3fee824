"""R's semantics for the expressions inside a model formula.

Whatever in a formula is not the formula language's own (``~ + - * / : ^ %in% |`` and
parentheses) is an R expression naming one model variable: ``log(total.fruits + 1)``,
``I(Days > 4)``, ``cut(x, 3)``, and the response ``Reaction - Days``.  :func:`evaluate`
evaluates such an expression as R would:

- names are looked up in the data first, then in the formula's environment (the caller's
  variables, or ``env=``); ``TRUE FALSE T F NA NaN Inf NULL pi`` are R's constants unless the
  data have such a column;
- ``+ - * / ^ %% %/%`` are arithmetic, ``== != < > <= >=`` comparisons (a factor compares by
  its labels), ``& && | || !`` logic and ``%in%`` set membership;
- a logical result is a factor with levels FALSE, TRUE (``I(Days > 4)`` gives the column
  ``I(Days > 4)TRUE``), a character result a factor with sorted levels, as in R's
  model.frame;
- the R functions below have R's arguments (positional or named, ``raw = TRUE``) and
  results; any other function is looked up in the environment (a Python callable, or a
  dotted name such as ``np.log``).

R functions:

    I offset log(x, base) log10 log2 log1p exp expm1 sqrt abs sign floor ceiling trunc
    round(x, digits) sin cos tan asin acos atan sinh cosh tanh
    poly(x, degree, raw)          orthogonal polynomials as R's (or raw powers)
    scale(x, center, scale)       centred and scaled by the sd, as R's
    factor(x, levels, labels, exclude)  as.factor relevel(x, ref)
    cut(x, breaks, labels, include.lowest, right, dig.lab)  R's intervals and labels
    ifelse(test, yes, no)  pmin pmax  c  is.na  paste paste0
    as.numeric as.double as.integer as.character as.logical
    mean sd var median min max sum length

``poly``, ``scale``, ``factor`` and ``cut`` keep what they computed on the fitting data
(coefficients, centre and scale, levels, breaks) and reuse it on new data, as R's
``makepredictcall`` does for poly and scale.  Ordered factors (``ordered()``), whose
polynomial contrasts lmmpy does not implement, are refused rather than fitted with other
contrasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError
from .parser import PAREN, Kw, Name, Num, Str, deparse

CONSTANTS = {
    "TRUE": True,
    "FALSE": False,
    "T": True,
    "F": False,
    "NA": np.nan,
    "NaN": np.nan,
    "Inf": np.inf,
    "NULL": None,
    "pi": math.pi,
}


@dataclass
class Matrix:
    """A matrix-valued variable (``poly(x, 2)``): its columns, named by suffix (R's colnames)."""

    columns: dict


def r_label(value) -> str:
    """``as.character`` of one value: 1 -> "1", 0.5 -> "0.5", 1e6 -> "1e+06", True -> "TRUE"."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "NA"
        if np.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        text = format(float(value), ".15g")
        mantissa, _, exponent = text.partition("e")
        return mantissa + (f"e{exponent[0]}{int(exponent[1:]):02d}" if exponent else "")
    return str(value)


# ---------------------------------------------------------------------------
# values: numpy arrays (float, bool, object strings), pandas Categorical (factors), scalars
# ---------------------------------------------------------------------------
def column_value(col):
    """A data column as the evaluator holds it: a factor with its levels as R labels, or a
    numpy array (float, bool, or object for strings)."""
    if isinstance(col, pd.Series):
        if isinstance(col.dtype, pd.CategoricalDtype):
            labels = [c if isinstance(c, str) else r_label(c) for c in col.cat.categories]
            return pd.Categorical.from_codes(col.cat.codes.to_numpy(), categories=list(dict.fromkeys(labels)))
        if pd.api.types.is_bool_dtype(col):
            return col.to_numpy(dtype=bool)
        if pd.api.types.is_numeric_dtype(col):
            return col.to_numpy(dtype=float, na_value=np.nan)
        return col.to_numpy(dtype=object)
    return col


def _labels(v):
    """A factor or vector as an array of R labels (strings)."""
    if isinstance(v, pd.Categorical):
        return np.asarray(v.astype(object))
    arr = np.atleast_1d(np.asarray(v, dtype=object))
    return np.array([x if isinstance(x, str) or x is None else r_label(x) for x in arr], dtype=object)


def _is_character(v) -> bool:
    if isinstance(v, str):
        return True
    return isinstance(v, np.ndarray) and v.dtype == object and any(isinstance(x, str) for x in v)


class _Eval:
    def __init__(self, formula_text, lookup, env, state):
        self.formula_text = formula_text
        self.lookup, self.env, self.state = lookup, env, state

    def error(self, msg):
        raise FormulaError(self.formula_text, msg)

    # ---- coercions ------------------------------------------------------------------
    def num(self, v, where):
        if isinstance(v, pd.Categorical):
            self.error(f"{deparse(where)}: arithmetic on a factor is not meaningful (R gives NA)")
        if v is None:
            self.error(f"{deparse(where)}: NULL where a number is needed")
        if isinstance(v, str) or _is_character(v):
            self.error(f"{deparse(where)}: a character value where a number is needed")
        if isinstance(v, Matrix):
            self.error(f"{deparse(where)}: a matrix (such as poly()) where a vector is needed")
        if isinstance(v, np.ndarray) and v.dtype == object:
            return v.astype(float)
        return np.asarray(v, dtype=float) if isinstance(v, np.ndarray) else float(v)

    @staticmethod
    def logical(v):
        if isinstance(v, np.ndarray) and v.dtype == bool:
            return v
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        return np.asarray(v, dtype=float) != 0

    # ---- evaluation ------------------------------------------------------------------
    def __call__(self, node):
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Str):
            return node.value
        if isinstance(node, Name):
            return self.name(node.id)
        if isinstance(node, Kw):
            self.error(f"a named argument {deparse(node)!r} outside a function call")
        op, args = node.op, node.args
        if op == PAREN:
            return self(args[0])
        if len(args) == 2 and op in _BINARY:
            return _BINARY[op](self, self(args[0]), self(args[1]), node)
        if len(args) == 1 and op in ("-", "+"):
            x = self.num(self(args[0]), node)
            return -x if op == "-" else x
        if len(args) == 1 and op == "!":
            return np.logical_not(self.logical(self(args[0])))
        if op in ("~", "|", "||") and len(args) != 2:
            self.error(f"{op!r} cannot be used inside a function call: {deparse(node)!r}")
        return self.call(node)

    def name(self, name):
        try:
            return self.lookup(name)
        except KeyError:
            pass
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in self.env:
            return _env_value(self.env[name])
        head, _, rest = name.partition(".")
        if rest and head in self.env:  # np.pi: Python attribute access
            value = self.env[head]
            try:
                for part in rest.split("."):
                    value = getattr(value, part)
            except AttributeError:
                pass
            else:
                return _env_value(value)
        self.error(
            f"object {name!r} not found: it is neither a column of the data nor a variable "
            "of the formula's environment (the calling code's, or env=)"
        )

    def call(self, node):
        fname = node.op
        args = [self(a) for a in node.args if not isinstance(a, Kw)]
        kwargs = {a.name: self(a.value) for a in node.args if isinstance(a, Kw)}
        if fname in ("ordered", "as.ordered"):
            self.error(
                f"{deparse(node)}: ordered factors have polynomial contrasts in R, which lmmpy "
                "does not implement; use factor() for treatment contrasts"
            )
        fun = FUNCTIONS.get(fname)
        if fun is not None:
            state = self.state.setdefault(deparse(node), {}) if fname in _STATEFUL else None
            try:
                return fun(self, node, state, *args, **{k.replace(".", "_"): v for k, v in kwargs.items()})
            except TypeError as e:
                self.error(f"bad arguments in {deparse(node)!r}: {e}")
        pyfun = self.python_function(fname, node)
        try:
            out = pyfun(*args, **kwargs)
        except (FormulaError, DataError):
            raise
        except Exception as e:  # noqa: BLE001 - the user's function, any failure
            self.error(f"{deparse(node)!r} failed: {type(e).__name__}: {e}")
        return _env_value(out)

    def python_function(self, fname, node):
        """A function of the environment: ``f`` or a dotted ``np.log``."""
        value = self.env.get(fname) if fname in self.env else None
        if value is None:
            head, _, rest = fname.partition(".")
            if rest and head in self.env:
                value = self.env[head]
                for part in rest.split("."):
                    value = getattr(value, part, None)
        if callable(value):
            return value
        self.error(
            f"unknown function {fname!r} in {deparse(node)!r}: it is not one of the R functions "
            f"lmmpy knows ({', '.join(sorted(FUNCTIONS))}) nor a function of the formula's "
            "environment"
        )


def _env_value(v):
    """A value from the environment or a Python function, as the evaluator holds it."""
    if isinstance(v, pd.DataFrame):
        return Matrix({str(c): column_value(v[c]) for c in v.columns})
    if isinstance(v, pd.Series):
        return column_value(v)
    if isinstance(v, (list, tuple)):
        return np.asarray(v)
    if isinstance(v, np.ndarray) and v.ndim == 2:
        return Matrix({str(j + 1): v[:, j] for j in range(v.shape[1])})
    return v


# ---------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------
def _arith(fun):
    def op(ev, a, b, node):
        with np.errstate(all="ignore"):
            return fun(ev.num(a, node), ev.num(b, node))

    return op


def _compare(fun):
    def op(ev, a, b, node):
        if isinstance(a, pd.Categorical) or isinstance(b, pd.Categorical) or _is_character(a) or _is_character(b):
            a, b = _labels(a), _labels(b)  # R compares a factor (or a string) by its labels
            return np.asarray(fun(a, b), dtype=bool)
        with np.errstate(invalid="ignore"):
            return fun(ev.num(a, node), ev.num(b, node))

    return op


def _seq(ev, a, b, node):
    a, b = ev.num(a, node), ev.num(b, node)
    if np.ndim(a) or np.ndim(b):
        ev.error(f"{deparse(node)!r}: ':' inside a function call is R's sequence from:to, of two numbers")
    step = 1.0 if b >= a else -1.0
    return a + step * np.arange(int(abs(b - a)) + 1)


def _in(ev, a, b, node):
    return (
        np.isin(_labels(a), _labels(b))
        if (isinstance(a, pd.Categorical) or _is_character(a) or _is_character(b))
        else np.isin(ev.num(a, node), ev.num(b, node))
    )


_BINARY = {
    "+": _arith(np.add),
    "-": _arith(np.subtract),
    "*": _arith(np.multiply),
    "/": _arith(np.true_divide),
    "^": _arith(np.power),
    "%%": _arith(np.mod),
    "%/%": _arith(np.floor_divide),
    "==": _compare(np.equal),
    "!=": _compare(np.not_equal),
    "<": _compare(np.less),
    ">": _compare(np.greater),
    "<=": _compare(np.less_equal),
    ">=": _compare(np.greater_equal),
    "&": lambda ev, a, b, node: np.logical_and(ev.logical(a), ev.logical(b)),
    "&&": lambda ev, a, b, node: np.logical_and(ev.logical(a), ev.logical(b)),
    "|": lambda ev, a, b, node: np.logical_or(ev.logical(a), ev.logical(b)),
    "||": lambda ev, a, b, node: np.logical_or(ev.logical(a), ev.logical(b)),
    ":": _seq,
    "%in%": _in,
}


# ---------------------------------------------------------------------------
# R functions: fun(evaluator, call node, state or None, *args, **kwargs)
# ---------------------------------------------------------------------------
def _math(fun):
    def f(ev, node, state, x):
        with np.errstate(all="ignore"):
            return fun(ev.num(x, node))

    return f


def _identity(ev, node, state, x):
    return x


def _log(ev, node, state, x, base=math.e):
    with np.errstate(all="ignore"):
        return np.log(ev.num(x, node)) / (1.0 if base == math.e else np.log(ev.num(base, node)))


def _round(ev, node, state, x, digits=0):
    return np.round(ev.num(x, node), int(digits))


def _summary(fun):
    def f(ev, node, state, *xs, na_rm=False):
        x = np.concatenate([np.atleast_1d(ev.num(v, node)) for v in xs])
        if na_rm:
            x = x[~np.isnan(x)]
        return float(fun(x))

    return f


def _length(ev, node, state, x):
    return float(len(x) if hasattr(x, "__len__") and not isinstance(x, str) else 1)


def _pminmax(fun):
    def f(ev, node, state, *xs, na_rm=False):
        if not xs:
            ev.error(f"{deparse(node)!r} needs at least one argument")
        vals = [ev.num(v, node) for v in xs]
        out = vals[0]
        for v in vals[1:]:
            out = (np.fmin if fun is np.minimum else np.fmax)(out, v) if na_rm else fun(out, v)
        return out

    return f


def _c(ev, node, state, *xs):
    parts = [np.atleast_1d(_labels(x) if isinstance(x, pd.Categorical) else np.asarray(x)) for x in xs if x is not None]
    if not parts:
        return None
    if any(p.dtype == object or p.dtype.kind in "US" for p in parts):
        return np.concatenate([_labels(p) for p in parts])
    return np.concatenate(parts)


def _ifelse(ev, node, state, test, yes, no):
    cond = ev.logical(test)
    yes = _labels(yes) if isinstance(yes, pd.Categorical) else yes
    no = _labels(no) if isinstance(no, pd.Categorical) else no
    if _is_character(yes) or _is_character(no):
        return np.where(
            cond,
            _labels(yes) if np.ndim(yes) else r_label(yes) if not isinstance(yes, str) else yes,
            _labels(no) if np.ndim(no) else r_label(no) if not isinstance(no, str) else no,
        ).astype(object)
    return np.where(cond, ev.num(yes, node), ev.num(no, node))


def _is_na(ev, node, state, x):
    if isinstance(x, pd.Categorical):
        return np.asarray(x.codes) < 0
    arr = np.asarray(x)
    if arr.dtype == object:
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in arr.ravel()])
    return np.isnan(arr.astype(float))


def _paste(sep):
    def f(ev, node, state, *xs, sep=sep, collapse=None):
        parts = [_labels(x) for x in xs]
        n = max((len(p) for p in parts), default=0)
        out = np.array([sep.join(str(p[i % len(p)]) for p in parts) for i in range(n)], dtype=object)
        return out if collapse is None else collapse.join(out)

    return f


def _as_numeric(integer):
    def f(ev, node, state, x):
        if isinstance(x, pd.Categorical):  # R: a factor's integer codes
            out = np.asarray(x.codes, dtype=float) + 1
            out[np.asarray(x.codes) < 0] = np.nan
        elif _is_character(x):
            out = pd.to_numeric(pd.Series(_labels(x)), errors="coerce").to_numpy(dtype=float)
        else:
            out = ev.num(x, node)
        return np.trunc(out) if integer else out

    return f


def _as_character(ev, node, state, x):
    return _labels(x)


def _as_logical(ev, node, state, x):
    if _is_character(x) or isinstance(x, pd.Categorical):
        lab = _labels(x)
        return np.isin(lab, ["TRUE", "true", "T", "True"])
    return ev.logical(x)


def _poly(ev, node, state, x, *dots, degree=1, raw=False, coefs=None, simple=False):
    """R's poly(): raw powers x, x^2, ... or orthogonal polynomials.

    The orthogonal ones are R's: with the fitting data's x, p_0 = 1, p_1 = x - a_0 and
    p_{j+1} = (x - a_j) p_j - (n_j / n_{j-1}) p_{j-1}, where a_j = sum(x p_j^2) / n_j and
    n_j = sum(p_j^2) (the three-term recurrence of polynomials orthogonal over the data; the
    same as the Gram-Schmidt residuals of 1, x, x^2, ... that R's QR gives); column j is
    p_j / sqrt(n_j).  New data are put through the same a_j and n_j."""
    if len(dots) == 1 and np.ndim(dots[0]) == 0:
        degree = dots[0]
    elif dots:
        ev.error(f"{deparse(node)!r}: poly() of several variables is not supported")
    x = ev.num(x, node)
    degree = int(degree)
    if degree < 1:
        ev.error(f"{deparse(node)!r}: 'degree' must be at least 1")
    if raw:
        return Matrix({str(j): x**j for j in range(1, degree + 1)})
    if "alpha" not in state:
        if np.any(np.isnan(x)):
            ev.error(f"{deparse(node)!r}: missing values are not allowed in poly()")
        if degree >= len(np.unique(x)):
            ev.error(f"{deparse(node)!r}: 'degree' must be less than the number of unique points")
        alpha, norm2 = [], [1.0, float(len(x))]
        p_prev, p = np.zeros_like(x), np.ones_like(x)
        for j in range(degree):
            alpha.append(float(np.sum(x * p * p) / norm2[-1]))
            p_prev, p = p, (x - alpha[-1]) * p - (norm2[-1] / norm2[-2]) * p_prev
            norm2.append(float(np.sum(p * p)))
        state.update(alpha=alpha, norm2=norm2)
    alpha, norm2 = state["alpha"], state["norm2"]
    cols, p_prev, p = {}, np.zeros_like(x), np.ones_like(x)
    for j in range(degree):
        p_prev, p = p, (x - alpha[j]) * p - (norm2[j + 1] / norm2[j]) * p_prev
        cols[str(j + 1)] = p / np.sqrt(norm2[j + 2])
    return Matrix(cols)


def _scale(ev, node, state, x, center=True, scale=True):
    """R's scale(): x minus its mean (or ``center``), divided by its standard deviation
    (with n - 1; without centring, the root mean square sqrt(sum x^2 / (n - 1))), or ``scale``."""
    x = ev.num(x, node)
    if "center" not in state:
        ok = x[~np.isnan(x)]
        c = float(np.mean(ok)) if center is True else 0.0 if center is False else float(center)
        if scale is True:
            s = float(np.sqrt(np.sum((ok - c) ** 2) / max(len(ok) - 1, 1)))
        else:
            s = 1.0 if scale is False else float(scale)
        state.update(center=c, scale=s)
    return (x - state["center"]) / state["scale"]


def _factor_levels(x):
    """R's sort(unique(x)) as labels: numbers in numeric order, strings in code-point order."""
    if isinstance(x, pd.Categorical):
        return [c for c in x.categories if c in set(x[~pd.isna(x)])]
    arr = np.atleast_1d(np.asarray(x))
    if arr.dtype == object and not all(isinstance(v, str) for v in arr if v is not None):
        arr = arr.astype(float) if all(isinstance(v, (int, float)) for v in arr if v is not None) else arr
    if arr.dtype == object:
        return sorted({v for v in arr if isinstance(v, str)})
    vals = np.unique(arr[~np.isnan(arr.astype(float))]) if arr.dtype != bool else np.unique(arr)
    return [r_label(v) for v in vals]


def _as_factor_of(ev, node, state, x, levels, labels):
    """x as a pandas Categorical with levels ``levels`` (labels), relabelled by ``labels``;
    values not among the levels are NA.  On new data the fitting data's levels are kept and a
    level they did not have is an error."""
    lab = _labels(x)
    if "levels" not in state:
        lv = [r_label(v) if not isinstance(v, str) else v for v in np.atleast_1d(np.asarray(levels, dtype=object))]
        if labels is None:
            names = lv
        else:
            names = [
                r_label(v) if not isinstance(v, str) else v for v in np.atleast_1d(np.asarray(labels, dtype=object))
            ]
            if len(names) == 1 and len(lv) > 1:
                names = [f"{names[0]}{i + 1}" for i in range(len(lv))]
            if len(names) != len(lv):
                ev.error(f"{deparse(node)!r}: 'labels' has {len(names)} values for {len(lv)} levels")
        state.update(levels=lv, labels=names, fitted=False)
    elif state.get("fitted"):
        seen = set(state["levels"])
        new = sorted({v for v in lab if v is not None and v not in seen and v != "NA"})
        if new:
            raise DataError(
                f"{deparse(node)} has new level(s) {', '.join(map(repr, new[:10]))} not in the data "
                "the model was fitted to"
            )
    index = {v: i for i, v in enumerate(state["levels"])}
    codes = np.array([index.get(v, -1) for v in lab], dtype=np.int64)
    out = pd.Categorical.from_codes(codes, categories=list(dict.fromkeys(state["labels"])))
    return out


def _factor(ev, node, state, x=None, levels=None, labels=None, exclude=None, ordered=False, nmax=None):
    if ordered:
        ev.error(f"{deparse(node)}: ordered factors have polynomial contrasts in R, which lmmpy does not implement")
    if x is None:
        ev.error(f"{deparse(node)!r} needs a variable")
    if levels is None:
        levels = _factor_levels(x)
        if exclude is not None:
            levels = [v for v in levels if v not in set(_labels(exclude))]
    return _as_factor_of(ev, node, state, x, levels, labels)


def _as_factor(ev, node, state, x):
    if isinstance(x, pd.Categorical):
        return x
    return _as_factor_of(ev, node, state, x, _factor_levels(x), None)


def _relevel(ev, node, state, x, ref):
    if not isinstance(x, pd.Categorical):
        ev.error(f"{deparse(node)!r}: relevel() needs a factor")
    ref = ref if isinstance(ref, str) else r_label(ref)
    if ref not in list(x.categories):
        ev.error(f"{deparse(node)!r}: {ref!r} is not a level of the factor")
    return x.reorder_categories([ref] + [c for c in x.categories if c != ref])


def _format_g(v, digits):
    """C's %.<digits>g, as R's formatC(v, digits) writes a break of cut()."""
    return "%.*g" % (digits, v + 0.0)


def _cut(ev, node, state, x, breaks, labels=None, include_lowest=False, right=True, dig_lab=3, ordered_result=False):
    """R's cut(): the interval of each value, a factor labelled "(a,b]" (or "[a,b)" with
    right = FALSE).  ``breaks`` a number n cuts the range into n equal intervals, widened by
    a thousandth of the range at both ends; the labels have the fewest significant digits
    (at least dig.lab) that tell the breaks apart."""
    x = ev.num(x, node)
    if "breaks" not in state:
        b = np.atleast_1d(ev.num(breaks, node))
        if b.size == 1:
            nb = int(b[0])
            if nb < 2:
                ev.error(f"{deparse(node)!r}: invalid number of intervals")
            ok = x[~np.isnan(x)]
            lo, hi = float(ok.min()), float(ok.max())
            dx = hi - lo
            if dx == 0:
                dx = abs(lo) if lo != 0 else 1.0
                b = np.linspace(lo - dx / 1000, hi + dx / 1000, nb + 1)
            else:
                b = np.linspace(lo, hi, nb + 1)
                b[0], b[-1] = lo - dx / 1000, hi + dx / 1000
        b = np.sort(b)
        if len(np.unique(b)) != len(b):
            ev.error(f"{deparse(node)!r}: 'breaks' are not unique")
        if labels is None or labels is True:
            for digits in range(int(dig_lab), max(12, int(dig_lab)) + 1):
                text = [_format_g(v, digits) for v in b]
                if all(a != c for a, c in zip(text[:-1], text[1:])):
                    break
            left, rightb = ("(", "]") if right else ("[", ")")
            names = [f"{left}{a},{c}{rightb}" for a, c in zip(text[:-1], text[1:])]
            if include_lowest:
                if right:
                    names[0] = "[" + names[0][1:]
                else:
                    names[-1] = names[-1][:-1] + "]"
        elif labels is False:
            names = [str(i + 1) for i in range(len(b) - 1)]
        else:
            names = [v if isinstance(v, str) else r_label(v) for v in np.atleast_1d(np.asarray(labels, dtype=object))]
            if len(names) != len(b) - 1:
                ev.error(f"{deparse(node)!r}: 'labels' has {len(names)} values for {len(b) - 1} intervals")
        state.update(breaks=[float(v) for v in b], labels=names)
    b = np.asarray(state["breaks"])
    if right:
        codes = np.searchsorted(b, x, side="left") - 1  # b[i] < x <= b[i+1]
        if include_lowest:
            codes[x == b[0]] = 0
    else:
        codes = np.searchsorted(b, x, side="right") - 1  # b[i] <= x < b[i+1]
        if include_lowest:
            codes[x == b[-1]] = len(b) - 2
    codes[(codes < 0) | (codes > len(b) - 2) | np.isnan(x)] = -1
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=state["labels"])


FUNCTIONS = {
    "I": _identity,
    "offset": _identity,
    "log": _log,
    "log10": _math(np.log10),
    "log2": _math(np.log2),
    "log1p": _math(np.log1p),
    "exp": _math(np.exp),
    "expm1": _math(np.expm1),
    "sqrt": _math(np.sqrt),
    "abs": _math(np.abs),
    "sign": _math(np.sign),
    "floor": _math(np.floor),
    "ceiling": _math(np.ceil),
    "trunc": _math(np.trunc),
    "round": _round,
    "sin": _math(np.sin),
    "cos": _math(np.cos),
    "tan": _math(np.tan),
    "asin": _math(np.arcsin),
    "acos": _math(np.arccos),
    "atan": _math(np.arctan),
    "sinh": _math(np.sinh),
    "cosh": _math(np.cosh),
    "tanh": _math(np.tanh),
    "poly": _poly,
    "scale": _scale,
    "factor": _factor,
    "as.factor": _as_factor,
    "relevel": _relevel,
    "cut": _cut,
    "ifelse": _ifelse,
    "pmin": _pminmax(np.minimum),
    "pmax": _pminmax(np.maximum),
    "c": _c,
    "is.na": _is_na,
    "paste": _paste(" "),
    "paste0": _paste(""),
    "as.numeric": _as_numeric(False),
    "as.double": _as_numeric(False),
    "as.integer": _as_numeric(True),
    "as.character": _as_character,
    "as.logical": _as_logical,
    "mean": _summary(np.mean),
    "sd": _summary(lambda v: np.std(v, ddof=1)),
    "var": _summary(lambda v: np.var(v, ddof=1)),
    "median": _summary(np.median),
    "min": _summary(np.min),
    "max": _summary(np.max),
    "sum": _summary(np.sum),
    "length": _length,
}
_STATEFUL = {"poly", "scale", "factor", "as.factor", "cut"}


def evaluate(node, lookup, env, state, formula_text):
    """The value of the R expression ``node``.

    ``lookup(name)`` gives a data column (raising KeyError for a name that is not one),
    ``env`` is the formula's environment (a mapping), ``state`` a dict in which poly, scale,
    factor and cut keep what they computed from the fitting data."""
    try:
        return _Eval(formula_text, lookup, env, state)(node)
    except RecursionError:
        raise FormulaError(formula_text, f"{deparse(node)!r} nests too deeply") from None


def mark_fitted(state):
    """After fitting: a factor's levels are fixed, and a new level in new data is an error."""
    for sub in state.values():
        if "levels" in sub:
            sub["fitted"] = True
