"""lme4's formula structure: the response, the fixed part and the random-effects bars.

``(expr | g)`` is one random-effects term; ``(expr || g)`` is expanded into uncorrelated
terms as lme4's ``expandDoubleVerts`` does; ``(expr | a/b)`` into ``(expr | b:a) + (expr | a)``
as its ``expandSlash`` does.  The fixed part is what remains after the bars are removed
(``1`` if nothing does).
"""

from __future__ import annotations

from dataclasses import dataclass

from formulaic import Formula

from ..errors import FormulaError
from .parser import FORMULA_OPERATORS, PAREN, Call, Name, Num, deparse, parse, tokenize


@dataclass(frozen=True)
class Bar:
    """One random-effects term ``(lhs | group)`` after expansion."""

    lhs: object  # expression tree of the term's model formula
    group: object  # expression tree: a name or an interaction a:b

    @property
    def group_name(self) -> str:
        return deparse(self.group)

    @property
    def group_vars(self) -> list[str]:
        """The factor columns whose interaction is the grouping factor, in formula order."""
        out = []

        def walk(n):
            if isinstance(n, Name):
                out.append(n.id)
            elif isinstance(n, Call) and n.op in (":", PAREN):
                for a in n.args:
                    walk(a)
            else:
                raise ValueError(deparse(n))

        walk(self.group)
        return out

    def __str__(self):
        return f"({deparse(self.lhs)} | {self.group_name})"


@dataclass(frozen=True)
class LmerFormula:
    """A parsed lme4 formula.  ``tree`` is the formula as lme4 prints it (``||`` expanded)."""

    text: str
    tree: object
    response: object
    fixed: object
    bars: tuple
    offsets: tuple = ()  # the offset(x) terms of the fixed part (``fixed`` leaves them out)

    @property
    def fixed_text(self) -> str:
        return deparse(self.fixed)

    @property
    def response_text(self) -> str:
        return deparse(self.response)


def _is_bar(n):
    return isinstance(n, Call) and n.op in ("|", "||")


def _strip_parens(n):
    while isinstance(n, Call) and n.op == PAREN:
        n = n.args[0]
    return n


def _contains_bar(n):
    """A random-effects bar in the formula part of ``n``: inside a function call, such as
    ``I(a | b)``, ``|`` is R's logical or."""
    stack = [n]
    while stack:
        n = stack.pop()
        if _is_bar(n):
            return True
        if isinstance(n, Call) and n.op in FORMULA_OPERATORS:
            stack.extend(n.args)
    return False


def _split_terms(node, sign, out):
    """Flatten a top-level + / - chain into (sign, term) pairs, descending into parens
    that hold bars (lme4's findbars/nobars do the same).  Iterative: the chain of a
    formula with thousands of terms is thousands deep."""
    stack = [(node, sign)]
    while stack:
        node, sign = stack.pop()
        if isinstance(node, Call) and node.op in ("+", "-") and len(node.args) == 2:
            stack.append((node.args[1], sign if node.op == "+" else "-"))
            stack.append((node.args[0], sign))
        elif isinstance(node, Call) and node.op == PAREN and _contains_bar(node) and not _is_bar(node.args[0]):
            stack.append((node.args[0], sign))
        else:
            out.append((sign, node))


def _term_labels(formula_text, lhs):
    """Term labels and intercept flag of a bar's left-hand side (R's terms())."""
    try:
        f = Formula(deparse(lhs))
    except Exception as e:  # noqa: BLE001 - formulaic raises several kinds
        raise FormulaError(formula_text, f"cannot read random-effects term {deparse(lhs)!r}: {e}") from None
    labels = [str(t) for t in f]
    has_intercept = "1" in labels
    return [t for t in labels if t != "1"], has_intercept


def _expand_double_vert(formula_text, lhs, group):
    labels, intercept = _term_labels(formula_text, lhs)
    out = [Bar(Num("1"), group)] if intercept else []
    for lab in labels:
        out.append(Bar(Call("+", (Num("0"), parse(lab))), group))
    return out


def _slash_groups(formula_text, g):
    """``a/b/c`` -> [c:b:a, b:a, a] (lme4's expandSlash order)."""
    g = _strip_parens(g)
    if isinstance(g, Call) and g.op == "/":
        inner = _slash_groups(formula_text, g.args[0])
        return [Call(":", (g.args[1], inner[0]))] + inner
    return [g]


def _check_group(formula_text, g):
    def ok(n):
        n = _strip_parens(n)
        if isinstance(n, Name):
            return True
        return isinstance(n, Call) and n.op in (":", "/") and all(ok(a) for a in n.args)

    if not ok(g):
        raise FormulaError(
            formula_text,
            f"the grouping factor {deparse(g)!r} must be a column name, an interaction a:b or a nesting a/b",
        )


def _rebuild(terms):
    """Join (sign, node) terms back into one + / - expression."""
    if not terms:
        return Num("1")
    sign, node = terms[0]
    expr = node if sign == "+" else Call("-", (node,))
    for sign, node in terms[1:]:
        expr = Call(sign, (expr, node))
    return expr


def parse_formula(text: str) -> LmerFormula:
    """Parse an lme4 model formula ``response ~ fixed + (lhs | group) + ...``."""
    if not isinstance(text, str):
        raise FormulaError(repr(text), "the formula must be a string such as 'y ~ x + (1 | g)'")
    tildes = sum(1 for tok in tokenize(text) if tok == ("op", "~"))
    if not tildes:
        raise FormulaError(text, "no '~': a model formula reads 'response ~ terms'")
    if tildes > 1:
        raise FormulaError(text, "'~' may appear only once")
    tree = parse(text)
    if not (isinstance(tree, Call) and tree.op == "~" and len(tree.args) == 2):
        raise FormulaError(text, "a model formula needs a response on the left of '~'")
    response, rhs = tree.args
    if _contains_bar(response):
        raise FormulaError(text, "the response may not contain '|'")

    parts: list = []
    _split_terms(rhs, "+", parts)
    fixed_terms, bars, printed, offsets = [], [], [], []
    for sign, term in parts:
        inner = _strip_parens(term)
        if _is_bar(inner):
            if sign == "-":
                raise FormulaError(text, f"a random-effects term cannot be subtracted: {deparse(term)!r}")
            if not (isinstance(term, Call) and term.op == PAREN):
                raise FormulaError(text, f"a random-effects term must be in parentheses: ({deparse(term)})")
            lhs, group = inner.args
            if _contains_bar(lhs) or _contains_bar(group):
                raise FormulaError(text, f"nested '|' in {deparse(term)!r}")
            _check_group(text, group)
            if inner.op == "||":
                expanded = _expand_double_vert(text, lhs, group)
                printed.append(
                    (
                        "+",
                        Call(
                            PAREN, (_rebuild([("+", Call(PAREN, (Call("|", (b.lhs, b.group)),))) for b in expanded]),)
                        ),
                    )
                )
            else:
                expanded = [Bar(lhs, group)]
                printed.append(("+", term))
            for b in expanded:
                for g in _slash_groups(text, b.group):
                    bars.append(Bar(b.lhs, g))
        elif _contains_bar(term):
            raise FormulaError(
                text,
                f"'|' may appear only in a parenthesised random-effects term, as in (1 | g); found {deparse(term)!r}",
            )
        elif isinstance(inner, Call) and inner.op == "offset":  # a known part of the linear predictor
            if sign == "-" or len(inner.args) != 1:
                raise FormulaError(text, f"an offset term reads '+ offset(x)'; found {deparse(term)!r}")
            offsets.append(inner)
            printed.append((sign, term))
        else:
            fixed_terms.append((sign, term))
            printed.append((sign, term))
    if not bars:
        raise FormulaError(
            text, "no random-effects terms: add one such as (1 | group), or use a linear model for fixed effects only"
        )
    lm_tree = Call("~", (response, _rebuild(printed)))
    return LmerFormula(text, lm_tree, response, _rebuild(fixed_terms), tuple(bars), tuple(offsets))
