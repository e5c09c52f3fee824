"""Property-based: any string, or any sequence of formula tokens, either parses or raises
lmmpy's FormulaError -- never another exception."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lmmpy import FormulaError
from lmmpy.formula.bars import parse_formula

TOKENS = [
    "y",
    "x",
    "g",
    "h",
    "1",
    "0",
    "~",
    "+",
    "-",
    "*",
    "/",
    ":",
    "^",
    "|",
    "||",
    "(",
    ")",
    ",",
    "I(",
    "log(",
    "C(",
    "%in%",
    "**",
    " ",
    "2",
    "x.1",
    "`a b`",
]


def parses_or_formula_error(text):
    try:
        parse_formula(text)
    except FormulaError as e:
        assert text in str(e) or repr(text) in str(e)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_random_strings(text):
    parses_or_formula_error(text)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=14))
def test_random_token_sequences(tokens):
    parses_or_formula_error(" ".join(tokens))


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet="yxg1~+-*/:^|()% ,I`'\"\n\t.", max_size=30))
def test_random_formula_characters(text):
    parses_or_formula_error(text)
