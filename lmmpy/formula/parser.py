"""A parser for R's formula language, producing a small expression tree.

Only what model formulas use is supported: names (plain or in backticks), numbers,
function calls, parentheses, unary ``+``/``-`` and the binary operators
``~ | || + - * / %in% : ^``, with R's precedence (lowest first):

    ~   <   | ||   <   + -   <   * /   <   %in%   <   :   <   unary + -   <   ^

:func:`deparse` writes a tree back the way R's ``deparse()`` does, including its
line breaking at 60 characters, so that summaries print the formula as lme4 does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FormulaError


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Num:
    text: str

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass(frozen=True)
class Call:
    """``op(args...)``: operators (``+``, ``|``, ``(``...) and function calls alike."""

    op: str
    args: tuple


PAREN = "("
BINARY = {"~": 1, "|": 2, "||": 2, "+": 3, "-": 3, "*": 4, "/": 4, "%in%": 5, ":": 6, "^": 8}
RIGHT_ASSOC = {"^"}
UNARY_PREC = 7

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z.][A-Za-z0-9._]*|`[^`]+`)
    | (?P<op>\|\||%in%|\*\*|[~|+\-*/:^(),])
    | (?P<str>"[^"]*"|'[^']*')
    )""",
    re.VERBOSE,
)


def tokenize(text: str):
    pos, out = 0, []
    body = text.rstrip()
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if not m or m.end() == pos:
            bad = body[pos:].lstrip()[:1]
            where = len(body) - len(body[pos:].lstrip()) + 1
            raise FormulaError(text, f"unexpected character {bad!r} at position {where}")
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "op" and tok == "**":  # Python's power, as formulaic users write it
            tok = "^"
        out.append((kind, tok))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def error(self, msg):
        raise FormulaError(self.text, msg)

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

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
        tree = self.expr(0)
        if self.i < len(self.toks):
            self.error(f"unexpected {self.toks[self.i][1]!r} after a complete expression")
        return tree

    def expr(self, min_prec):
        left = self.unary()
        while True:
            kind, tok = self.peek()
            if kind != "op" or tok not in BINARY:
                return left
            prec = BINARY[tok]
            if prec < min_prec:
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
        if kind == "op" and tok == "~":  # one-sided formula
            self.take()
            return Call("~", (self.expr(2),))
        return self.primary()

    def primary(self):
        kind, tok = self.take()
        if kind is None:
            self.error("the formula ends where a term was expected")
        if kind == "num":
            return Num(tok)
        if kind == "str":
            return Name(tok)
        if kind == "name":
            name = tok[1:-1] if tok.startswith("`") else tok
            if self.peek() == ("op", "("):
                self.take()
                args = []
                if self.peek() != ("op", ")"):
                    while True:
                        args.append(self.expr(0))
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
    """Parse an R formula (or a part of one) into a tree of Name/Num/Call."""
    if not isinstance(text, str):
        raise FormulaError(str(text), "a formula must be a string")
    return _Parser(text).parse()


# ---------------------------------------------------------------------------
# deparse, as R does it
# ---------------------------------------------------------------------------
_BREAKING = {"~", "|", "||", "+", "-", "*"}  # R's PP_BINARY: may break the line after
_CUTOFF = 60


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
    if not isinstance(child, Call) or child.op not in BINARY:
        return False
    cp, pp = BINARY[child.op], BINARY[parent_op]
    return cp < pp or (cp == pp and (right != (parent_op in RIGHT_ASSOC)))


def _write(node, w):
    if isinstance(node, Name):
        w.put(node.id if re.fullmatch(r"[A-Za-z.][A-Za-z0-9._]*", node.id) else f"`{node.id}`")
    elif isinstance(node, Num):
        w.put(node.text)
    elif node.op == PAREN:
        w.put("(")
        _write(node.args[0], w)
        w.put(")")
    elif node.op in BINARY and len(node.args) == 2:
        left, right = node.args
        state = {"broke": False}
        for child, is_right in ((left, False), (right, True)):
            paren = _needs_parens(child, node.op, is_right)
            if paren:
                w.put("(")
            _write(child, w)
            if paren:
                w.put(")")
            if not is_right:
                if node.op in _BREAKING:
                    w.put(f" {node.op} ")
                    w.linebreak(state)
                else:
                    w.put(node.op)
        if state["broke"]:
            w.indent -= 1
    elif node.op in ("+", "-", "~") and len(node.args) == 1:
        w.put(node.op)
        _write(node.args[0], w)
    else:
        w.put(f"{node.op}(")
        for k, a in enumerate(node.args):
            if k:
                w.put(", ")
            _write(a, w)
        w.put(")")


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
