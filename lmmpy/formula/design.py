"""From formula and data to the model's matrices: y, X (dense) and the random-effects terms.

Each random-effects term ``(lhs | g)`` becomes a :class:`ReTerm`: the grouping factor's
integer codes and level labels, and the dense n x k model matrix of ``lhs``.  Its block of
Z (n x l k, sparse) has column ``level * k + j`` -- the levels outer, the term's columns
inner, as in lme4 -- so that Lambda's block for the term is ``I_l (x) T`` with T the k x k
lower-triangular template filled from theta.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import model_matrix
from formulaic.errors import FormulaicError

from ..errors import DataError, FormulaError
from .bars import LmerFormula, parse_formula
from .parser import PAREN, Call, Name, Num, deparse

# R functions that lme4 users write, evaluated by formulaic
CONTEXT = {
    "log": np.log, "log10": np.log10, "log2": np.log2, "log1p": np.log1p, "exp": np.exp,
    "sqrt": np.sqrt, "abs": np.abs, "np": np,
}
_FACTOR_FUNS = {"factor", "as.factor", "ordered", "as.ordered"}
_OPERATORS = (PAREN, "~", "|", "||", "+", "-", "*", "/", ":", "^", "%in%")


def to_formulaic(node, in_call=False) -> str:
    """Write an R formula tree in formulaic's dialect: ``factor(x)`` -> ``C(x)``, and inside
    function calls (``I(x^2)``, ``log(x)``) R's ``^`` becomes Python's ``**``."""
    if isinstance(node, Name):
        return node.id if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", node.id) else f"`{node.id}`"
    if isinstance(node, Num):
        return node.text
    if node.op == PAREN:
        return f"({to_formulaic(node.args[0], in_call)})"
    if len(node.args) == 2 and node.op in ("~", "|", "||", "+", "-", "*", "/", ":", "^", "%in%"):
        op = "**" if (in_call and node.op == "^") else node.op
        a, b = (to_formulaic(x, in_call) for x in node.args)
        return f"{a} {op} {b}" if op not in (":",) else f"{a}:{b}"
    if node.op in ("+", "-") and len(node.args) == 1:
        return f"{node.op}{to_formulaic(node.args[0], in_call)}"
    name = "C" if node.op in _FACTOR_FUNS else node.op
    return f"{name}({', '.join(to_formulaic(a, True) for a in node.args)})"


def factor_expressions(node, out=None) -> list:
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


def r_name(name: str, order=(), ) -> str:
    """formulaic's column name -> R's: ``Intercept`` -> ``(Intercept)``, ``g[T.b]`` -> ``gb``,
    ``I(x ** 2)`` -> ``I(x^2)``, ``C(x)`` -> ``factor(x)``; the parts of an interaction put in
    the order their variables first appear in the formula (``order``), as R labels them."""
    if name == "Intercept":
        return "(Intercept)"
    parts = []
    for part in name.split(":"):
        m = re.match(r"^(.*?)(?:\[(?:T\.)?([^\]]*)\])?$", part)
        expr, level = m.group(1), m.group(2) or ""
        rank = order.index(expr) if expr in order else len(order)
        expr = expr.replace(" ** ", "^").replace("**", "^")
        expr = re.sub(r"\bC\(", "factor(", expr)
        parts.append((rank, expr + level))
    parts.sort(key=lambda rp: rp[0])
    return ":".join(p for _, p in parts)


def _names_in(node, out, in_call=False):
    """Variable names of a tree: (name, inside-a-function-call)."""
    if isinstance(node, Name):
        out.append((node.id, in_call))
    elif isinstance(node, Call):
        is_fun = node.op not in _OPERATORS
        for a in node.args:
            _names_in(a, out, in_call or is_fun)


@dataclass
class ReTerm:
    """One random-effects term: grouping factor and the model matrix of its left-hand side."""

    group: str  # the grouping factor's name as lme4 prints it ("cask:batch")
    lhs: str  # the term's own formula
    codes: np.ndarray  # (n,) level index of each observation
    levels: list  # level labels
    X: np.ndarray  # (n, k) model matrix of the term
    cnames: list  # its column names (R style)
    spec: object = field(repr=False, default=None)  # formulaic spec of lhs
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
        rows = np.repeat(np.arange(n), k)
        cols = (self.codes[:, None] * k + np.arange(k)).ravel()
        return sp.csr_matrix((self.X.ravel(), (rows, cols)), shape=(n, self.q)).tocsc()

    def theta_names(self) -> list:
        """lme4's names: lower triangle, column by column."""
        out = []
        for j in range(self.k):
            for i in range(j, self.k):
                out.append(f"{self.group}.{self.cnames[i]}" if i == j
                           else f"{self.group}.{self.cnames[i]}.{self.cnames[j]}")
        return out


@dataclass
class Design:
    formula: LmerFormula
    y: np.ndarray
    X: np.ndarray
    xnames: list
    reterms: list  # ordered as lme4 orders them (decreasing number of levels)
    fixed_spec: object
    frame: pd.DataFrame  # the rows used, the variables used
    n_dropped: int = 0
    row_index: object = None  # index labels of the rows used
    weights: np.ndarray = None  # prior weights (residual variance sigma^2 / w), None for all 1
    offset: np.ndarray = None  # known part of the linear predictor, None for 0
    weights_name: str = None
    offset_name: str = None
    dropped_columns: list = field(default_factory=list)  # aliased columns of X, dropped
    x_keep: list = None  # indices of the kept columns among the formula's (for new data)

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
        lower = []
        for t in self.reterms:
            for j in range(t.k):
                for i in range(j, t.k):
                    lower.append(0.0 if i == j else -np.inf)
        return np.array(lower)

    def theta_start(self) -> np.ndarray:
        return np.where(self.theta_lower() == 0.0, 1.0, 0.0)


def _materialise(formula_text, node, frame, what, prefix=""):
    rhs_text = prefix + to_formulaic(node)
    try:
        mm = model_matrix(rhs_text, frame, context=CONTEXT, na_action="raise")
    except FormulaicError as e:
        raise FormulaError(formula_text, f"cannot build the {what} from {rhs_text!r}: {e}") from None
    order = factor_expressions(node)
    M, names = np.asarray(mm, dtype=float), [r_name(c, order) for c in mm.columns]
    bad = [nm for nm, ok in zip(names, np.isfinite(M).all(axis=0)) if not ok]
    if bad:
        raise DataError(f"infinite values in {', '.join(map(repr, bad))} of the {what} (formula {formula_text!r})")
    return M, names, mm.model_spec


def level_labels(values) -> list:
    """Level labels as R prints them (1.0 -> '1')."""
    out = []
    for v in values:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.append(str(v))
    return out


def grouping_factor(frame: pd.DataFrame, names) -> tuple:
    """(codes, levels) of a column or of the interaction of several (first one slowest);
    unused levels dropped, as factor() does in lme4."""
    codes, labels = None, None
    for nm in reversed(names):  # build right to left so the first factor varies slowest
        col = frame[nm]
        if isinstance(col.dtype, pd.CategoricalDtype):
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
    return codes.astype(np.int64), labels


def _order_terms(terms):
    """lme4's mkReTrms order: if the numbers of levels ever increase, reorder as rev(order(nl))."""
    nl = [t.nlevels for t in terms]
    if any(b > a for a, b in zip(nl, nl[1:])):
        order = sorted(range(len(nl)), key=lambda i: (nl[i], i))[::-1]
        terms = [terms[i] for i in order]
    return terms


def build_design(formula, data, factors=(), weights=None, offset=None) -> Design:
    """Parse ``formula`` and build the model's matrices from ``data`` (never modified).

    ``weights`` and ``offset`` are column names or arrays with one value per row of ``data``
    (by position), or pandas Series (by the data's index labels)."""
    f = formula if isinstance(formula, LmerFormula) else parse_formula(formula)
    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DataError("the data have no rows")

    used = []
    for node in (f.response, f.fixed, *(b.lhs for b in f.bars), *(b.group for b in f.bars)):
        _names_in(node, used)
    variables = []
    for name, in_call in used:
        if name in data.columns:
            if name not in variables:
                variables.append(name)
        elif not in_call:
            cols = ", ".join(map(str, list(data.columns)[:20]))
            raise DataError(f"unknown column {name!r} in formula {f.text!r}; the data have: {cols}")
    for b in f.bars:
        for g in b.group_vars:
            if g not in data.columns:
                raise DataError(f"unknown grouping column {g!r} in formula {f.text!r}")

    frame = data[variables].copy()
    extra = {}
    for role, arg in (("weights", weights), ("offset", offset)):
        if arg is not None:
            extra[role] = _row_values(role, arg, data)
            frame[f".{role}"] = extra[role][0]
    for c in factors:
        if c not in frame.columns:
            raise DataError(f"--factor/factors names {c!r}, which the formula does not use")
        frame[c] = frame[c].astype(str).astype("category")
    complete = frame.notna().all(axis=1).to_numpy()
    n_dropped = int((~complete).sum())
    frame = frame.loc[complete]
    if len(frame) == 0:
        raise DataError("no observations left after dropping rows with missing values")
    if len(frame) == 1:  # before the response's checks, which one value would fail misleadingly
        left = " after dropping rows with missing values" if n_dropped else ""
        raise DataError(f"the data have 1 observation{left}: grouping factors must have > 1 sampled level")

    y = _response(f, frame)
    X, xnames, fixed_spec = _materialise(f.text, f.fixed, frame, "fixed-effects matrix")
    X, xnames, dropped, x_keep = drop_aliased_columns(X, xnames)
    w = frame[".weights"].to_numpy(dtype=float) if "weights" in extra else None
    if w is not None and np.any(w <= 0):
        bad = "negative" if np.any(w < 0) else "zero"
        raise DataError(f"weights must be positive: {int(np.sum(w <= 0))} are {bad}")
    off = frame[".offset"].to_numpy(dtype=float) if "offset" in extra else None

    terms = []
    for b in f.bars:
        Xr, cn, spec = _materialise(f.text, b.lhs, frame, f"random-effects term {b}")
        if Xr.shape[1] == 0:
            raise FormulaError(f.text, f"the random-effects term {b} has no columns")
        codes, levels = grouping_factor(frame, b.group_vars)
        terms.append(ReTerm(b.group_name, deparse(b.lhs), codes, levels, Xr, cn, spec, tuple(b.group_vars)))
    terms = _order_terms(terms)
    _check_terms(terms, len(y))
    if X.shape[1] >= len(y):
        # X beta then fits y exactly: no residual degrees of freedom (REML's n - p = 0, ML's
        # deviance unbounded below as sigma -> 0); lme4 stops with "objective in x0 returns NA",
        # after the grouping factors' checks, as here
        aliased = f" of full rank (after dropping {len(dropped)} aliased)" if dropped else ""
        raise DataError(f"the fixed-effects model matrix has {X.shape[1]} columns{aliased} for {len(y)} "
                        "observations: there must be fewer fixed effects than observations, or no residual "
                        "variance is left to estimate")
    return Design(f, y, X, xnames, terms, fixed_spec, frame, n_dropped, frame.index, w, off,
                  extra.get("weights", (None, None))[1], extra.get("offset", (None, None))[1], dropped, x_keep)


def _row_values(role, arg, data):
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
                raise DataError(f"{role} is a pandas Series whose index does not match the data's index; "
                                f"give {role} the data's index (or pass an array, matched by position)")
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


def drop_aliased_columns(X, names, tol=1e-7):
    """Drop the columns of X that are linear combinations of earlier ones, as lme4 does
    (R's qr() with tol = 1e-7 keeps the first columns of full rank), with a warning naming them."""
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
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {k} column"
                      f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})",
                      RankDeficientWarning, stacklevel=4)
    return X[:, keep], [names[j] for j in keep], dropped, keep


class RankDeficientWarning(UserWarning):
    """Aliased fixed-effect columns were dropped."""


def _response(f, frame) -> np.ndarray:
    resp = f.response
    if isinstance(resp, Name):
        col = frame[resp.id]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            raise DataError(f"the response {resp.id!r} must be numeric, but its type is {col.dtype}")
        y = col.to_numpy(dtype=float)
    else:
        y, _, _ = _materialise(f.text, resp, frame, "response", prefix="0 + ")
        if y.shape[1] != 1:
            raise DataError(f"the response {deparse(resp)!r} must be a single numeric column")
        y = y[:, 0]
    if not np.all(np.isfinite(y)):
        raise DataError(f"the response {deparse(resp)!r} has infinite (or NaN) values")
    if np.ptp(y) == 0:
        raise DataError(f"the response {deparse(resp)!r} is constant")
    return y


def _check_terms(terms, n):
    """lme4's checkNlevels and checkZdims."""
    for t in terms:
        if t.nlevels < 2:
            raise DataError(f"the grouping factor {t.group!r} has only {t.nlevels} level; "
                            "grouping factors must have > 1 sampled level")
        if t.nlevels >= n:
            raise DataError(f"the grouping factor {t.group!r} has {t.nlevels} levels for {n} observations: "
                            "the number of levels of each grouping factor must be < number of observations")
        if t.q >= n:
            raise DataError(f"number of observations (={n}) <= number of random effects (={t.q}) "
                            f"for term ({t.lhs} | {t.group}); the random-effects parameters and the "
                            "residual variance are probably unidentifiable")
