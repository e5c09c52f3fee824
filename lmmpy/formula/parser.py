"""A parser for R's formula language, producing a small expression tree.

A formula is an R expression: names (plain, non-ASCII or in backticks), numbers (``1``,
``2.5e-3``, ``1L``, ``0x1F``), strings, function calls with positional and named arguments
(``poly(x, 2, raw = TRUE)``), parentheses, the unary operators ``+ - !`` and the binary
operators, with R's precedence (lowest first):

    ~  <  | ||  <  & &&  <  !  <  == != < > <= >=  <  + -  <  * /  <  %any%  <  :
       <  unary + -  <  ^

A ``#`` starts a comment that runs to the end of the line, as in R.  In a model formula the
operators ``~ + - * / : ^ %in% |`` and parentheses are the formula language's; any other call,
and everything inside a function call, is an ordinary R expression that
:mod:`lmmpy.formula.rlang` evaluates with R's semantics.  The R functions it knows:
``I offset log log10 log2 log1p exp expm1 sqrt abs sign floor ceiling trunc round`` and the
trigonometric ones, ``poly scale factor as.factor relevel cut ifelse pmin pmax c is.na paste
paste0 as.numeric as.double as.integer as.character as.logical mean sd var median min max sum
length``; other functions come from the formula's environment (``np.log``, the caller's own).

Trees are walked without recursion along the operator chains a formula is made of, so a
formula of thousands of terms parses and deparses; nesting deeper than Python's recursion
limit allows (hundreds of parentheses) is refused with a :class:`FormulaError`.

:func:`deparse` writes a tree back the way R's ``deparse()`` does, including its
line breaking at 60 characters, so that summaries print the formula as lme4 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import FormulaError


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Num:
    text: str

    @property
    def value(self) -> float:
        """The number, as R reads its literal (``1L`` is 1, ``0x10`` is 16)."""
        body = self.text[:-1] if self.text.endswith("L") else self.text
        return float(int(body, 16)) if body[:2].lower() == "0x" else float(body)


@dataclass(frozen=True)
class Str:
    """A string literal (its value, without quotes)."""

    value: str


@dataclass(frozen=True)
class Kw:
    """A named argument ``name = value`` of a function call."""

    name: str
    value: object


@dataclass(frozen=True)
class Call:
    """``op(args...)``: operators (``+``, ``|``, ``(``...) and function calls alike."""

    op: str
    args: tuple


# a parsed R expression: Name, Num, Str, Kw or Call (Any: its users dispatch with isinstance)
Node = Any

PAREN = "("
# the formula language's own operators; any other call is an R expression (a model variable)
FORMULA_OPERATORS = frozenset({PAREN, "~", "|", "||", "+", "-", "*", "/", ":", "^", "%in%"})
BINARY = {
    "~": 1,
    "|": 2,
    "||": 2,
    "&": 3,
    "&&": 3,
    "==": 5,
    "!=": 5,
    "<": 5,
    ">": 5,
    "<=": 5,
    ">=": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%in%": 8,
    ":": 9,
    "^": 11,
}
SPECIAL_PREC = 8  # R's %any% operators (%in%, %%, %/%, ...)
RIGHT_ASSOC = {"^"}
NOT_PREC = 4  # unary !: binds less tightly than comparisons, more than & and |
UNARY_PREC = 10  # unary + and -: binds less tightly than ^ only

_NAME = r"(?:[^\W\d_]|\.(?!\d))[\w.]*"  # R's syntactic names, letters of any alphabet
_SKIP = re.compile(r"(?:\s|#[^\n]*)*")  # blanks, and comments to the end of the line
_TOKEN = re.compile(
    r"""(?:
      (?P<num>0[xX][0-9a-fA-F]+L?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    | (?P<name>"""
    + _NAME
    + r"""|`[^`]+`)
    | (?P<op>\|\||&&|%[^%\n]*%|\*\*|==|!=|<=|>=|[~|&!<>=+\-*/:^(),])
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def precedence(op: str):
    """The binding strength of a binary operator, None if ``op`` is not one."""
    if op in BINARY:
        return BINARY[op]
    if len(op) >= 2 and op[0] == op[-1] == "%":
        return SPECIAL_PREC
    return None


def _unquote(tok: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), tok[1:-1], flags=re.DOTALL)


def tokenize(text: str) -> list[tuple[str, str]]:
    pos = 0
    out: list[tuple[str, str]] = []
    while True:
        skip = _SKIP.match(text, pos)
        assert skip is not None  # _SKIP matches the empty string
        pos = skip.end()
        if pos >= len(text):
            return out
        m = _TOKEN.match(text, pos)
        if not m:
            raise FormulaError(text, f"unexpected character {text[pos]!r} at position {pos + 1}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        tok = m.group(kind)
        if kind == "op" and tok == "**":  # Python's power, as formulaic users write it
            tok = "^"
        out.append((kind, tok))
        pos = m.end()


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def error(self, msg):
        raise FormulaError(self.text, msg)

    def peek(self, ahead=0):
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, op):
        kind, tok = self.take()
        if tok != op or kind != "op":
            found = "the end of the formula" if tok is None else repr(tok)
            self.error(f"expected {op!r} but found {found}")

    def parse(self):
        if not self.toks:
            self.error("the formula is empty")
        try:
            tree = self.expr(0)
        except RecursionError:
            self.error("the formula nests too deeply (too many parentheses or calls inside one another)")
        if self.i < len(self.toks):
            self.error(f"unexpected {self.toks[self.i][1]!r} after a complete expression")
        return tree

    def expr(self, min_prec):
        """Operators of at least ``min_prec``; a chain of left-associative ones in a loop."""
        left = self.unary()
        while True:
            kind, tok = self.peek()
            prec = precedence(tok) if kind == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.take()
            nxt = prec if tok in RIGHT_ASSOC else prec + 1
            if tok == "~" and min_prec > 1:
                self.error("'~' may appear only once, at the top level")
            right = self.expr(nxt)
            left = Call(tok, (left, right))

    def unary(self):
        kind, tok = self.peek()
        if kind == "op" and tok in ("+", "-"):
            self.take()
            return Call(tok, (self.expr(UNARY_PREC),))
        if kind == "op" and tok == "!":
            self.take()
            return Call(tok, (self.expr(NOT_PREC + 1),))
        if kind == "op" and tok == "~":  # one-sided formula
            self.take()
            return Call("~", (self.expr(2),))
        return self.primary()

    def argument(self):
        """One argument of a call: ``expr`` or ``name = expr``."""
        (kind, tok), (_, nxt) = self.peek(), self.peek(1)
        if kind in ("name", "str") and nxt == "=":
            self.take()
            self.take()
            name = _unquote(tok) if kind == "str" or tok.startswith("`") else tok
            return Kw(name, self.expr(0))
        return self.expr(0)

    def primary(self):
        kind, tok = self.take()
        if kind is None:
            self.error("the formula ends where a term was expected")
        if kind == "num":
            return Num(tok)
        if kind == "str":
            return Str(_unquote(tok))
        if kind == "name":
            name = tok[1:-1] if tok.startswith("`") else tok
            if self.peek() == ("op", "("):
                self.take()
                args = []
                if self.peek() != ("op", ")"):
                    while True:
                        args.append(self.argument())
                        if self.peek() == ("op", ","):
                            self.take()
                            continue
                        break
                self.expect(")")
                return Call(name, tuple(args))
            return Name(name)
        if tok == "(":
            inner = self.expr(0)
            self.expect(")")
            return Call(PAREN, (inner,))
        self.error(f"unexpected {tok!r} where a term was expected")


def parse(text: str):
    """Parse an R formula (or a part of one) into a tree of Name/Num/Str/Call (Kw in calls)."""
    if not isinstance(text, str):
        raise FormulaError(str(text), "a formula must be a string")
    return _Parser(text).parse()


def children(node) -> tuple:
    """The subtrees of a node: a call's arguments, a named argument's value."""
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Kw):
        return (node.value,)
    return ()


def walk(node):
    """Every node of a tree, parents before children, left to right -- with a stack, not
    recursion, so that a formula of thousands of terms is no problem."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def is_syntactic(name: str) -> bool:
    """An R name that needs no backticks."""
    return re.fullmatch(_NAME, name) is not None


# ---------------------------------------------------------------------------
# deparse, as R does it
# ---------------------------------------------------------------------------
_CUTOFF = 60
# R's PP_BINARY2 operators; the others (PP_BINARY: ~ | & == + - * %in% ...) are spaced, and
# the line may break after them
_UNSPACED = {"/", ":", "^", "%%", "%/%"}


class _Writer:
    def __init__(self, cutoff=_CUTOFF):
        self.lines, self.cur, self.indent, self.cutoff = [], "", 0, cutoff

    def put(self, s):
        if not self.cur and self.indent:
            self.cur = "    " * self.indent
        self.cur += s

    def linebreak(self, state):
        if len(self.cur) > self.cutoff:
            if not state["broke"]:
                state["broke"] = True
                self.indent += 1
            self.lines.append(self.cur)
            self.cur = ""


def _needs_parens(child, parent_op, right):
    if not isinstance(child, Call) or len(child.args) != 2 or precedence(child.op) is None:
        return False
    cp, pp = precedence(child.op), precedence(parent_op)
    return cp < pp or (cp == pp and (right != (parent_op in RIGHT_ASSOC)))


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _write(node, w):
    """Write ``node`` as R's deparse does.  A stack of pending actions stands in for
    recursion: ("node", n) writes a subtree, ("put", s) text, ("break", state) a possible line
    break after a binary operator, ("end", state) the end of that operator's indentation."""
    todo = [("node", node)]
    while todo:
        action, arg = todo.pop()
        if action == "put":
            w.put(arg)
            continue
        if action == "break":
            w.linebreak(arg)
            continue
        if action == "end":
            if arg["broke"]:
                w.indent -= 1
            continue
        steps = []
        node = arg
        if isinstance(node, Name):
            w.put(node.id if is_syntactic(node.id) else f"`{node.id}`")
        elif isinstance(node, Num):
            w.put(node.text)
        elif isinstance(node, Str):
            w.put(_quote(node.value))
        elif isinstance(node, Kw):
            name = node.name if is_syntactic(node.name) else f"`{node.name}`"
            steps = [("put", f"{name} = "), ("node", node.value)]
        elif node.op == PAREN:
            steps = [("put", "("), ("node", node.args[0]), ("put", ")")]
        elif precedence(node.op) is not None and len(node.args) == 2:
            left, right = node.args
            state = {"broke": False}
            for child, is_right in ((left, False), (right, True)):
                paren = _needs_parens(child, node.op, is_right)
                steps += [("put", "(")] if paren else []
                steps.append(("node", child))
                steps += [("put", ")")] if paren else []
                if not is_right:
                    if node.op in _UNSPACED:
                        steps.append(("put", node.op))
                    else:
                        steps += [("put", f" {node.op} "), ("break", state)]
            steps.append(("end", state))
        elif node.op in ("+", "-", "~", "!") and len(node.args) == 1:
            steps = [("put", node.op), ("node", node.args[0])]
        else:
            name = node.op if is_syntactic(node.op) else f"`{node.op}`"
            steps = [("put", f"{name}(")]
            for k, a in enumerate(node.args):
                steps += [("put", ", ")] if k else []
                steps.append(("node", a))
            steps.append(("put", ")"))
        todo.extend(reversed(steps))


def deparse_lines(node, cutoff=_CUTOFF) -> list[str]:
    """R's ``deparse(node)``: a list of lines broken after an operator past 60 characters."""
    w = _Writer(cutoff)
    _write(node, w)
    if w.cur or not w.lines:
        w.lines.append(w.cur)
    return w.lines


def deparse(node) -> str:
    """The tree as one line of R code."""
    return deparse_lines(node, cutoff=10**9)[0]
