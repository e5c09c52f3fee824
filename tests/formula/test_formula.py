"""The formula layer: R's grammar, lme4's bars and their expansions, R's deparse."""

import pytest

from lmmpy import FormulaError
from lmmpy.formula.bars import parse_formula
from lmmpy.formula.parser import Call, Name, Num, deparse, deparse_lines, parse


def bars(formula):
    return [str(b) for b in parse_formula(formula).bars]


def test_precedence_follows_r():
    t = parse("y ~ a + b:c * d^2 | g")
    # ~ lowest, then |, then +, then *, then :, then ^
    assert t.op == "~"
    assert t.args[1].op == "|"
    plus = t.args[1].args[0]
    assert plus.op == "+" and plus.args[1].op == "*"
    assert plus.args[1].args[0].op == ":" and plus.args[1].args[1].op == "^"


def test_function_calls_and_numbers():
    t = parse("log(y) ~ I(x^2) + poly(x, 2) + 0")
    assert t.args[0] == Call("log", (Name("y"),))
    assert t.args[1].args[0].args[1] == Call("poly", (Name("x"), Num("2")))
    assert deparse(t) == "log(y) ~ I(x^2) + poly(x, 2) + 0"


def test_simple_bar():
    f = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert f.response_text == "Reaction"
    assert f.fixed_text == "Days"
    assert bars("Reaction ~ Days + (Days | Subject)") == ["(Days | Subject)"]


def test_double_vert_expands_like_lme4():
    f = parse_formula("Reaction ~ Days + (Days || Subject)")
    assert [str(b) for b in f.bars] == ["(1 | Subject)", "(0 + Days | Subject)"]
    assert deparse(f.tree) == "Reaction ~ Days + ((1 | Subject) + (0 + Days | Subject))"


def test_double_vert_without_intercept_and_with_interaction():
    assert bars("y ~ (0 + a + b || g)") == ["(0 + a | g)", "(0 + b | g)"]
    assert bars("y ~ (a * b || g)") == ["(1 | g)", "(0 + a | g)", "(0 + b | g)", "(0 + a:b | g)"]


def test_nested_slash_expands_like_lme4():
    assert bars("y ~ 1 + (1 | batch/cask)") == ["(1 | cask:batch)", "(1 | batch)"]
    # as lme4: sapply(findbars(y ~ (1|a/b/c)), deparse) gives "1 | c:(b:a)" "1 | b:a" "1 | a"
    assert bars("y ~ (1 | a/b/c)") == ["(1 | c:(b:a))", "(1 | b:a)", "(1 | a)"]


def test_interaction_group_and_group_vars():
    f = parse_formula("y ~ 1 + (1 | dept:service)")
    assert f.bars[0].group_name == "dept:service"
    assert f.bars[0].group_vars == ["dept", "service"]


def test_no_intercept_in_bar():
    assert bars("y ~ x + (0 + x | g)") == ["(0 + x | g)"]
    assert bars("y ~ x + (x - 1 | g)") == ["(x - 1 | g)"]


def test_several_bars_crossed_and_same_factor():
    assert bars("y ~ 1 + (1 | a) + (1 | b) + (0 + x | a)") == ["(1 | a)", "(1 | b)", "(0 + x | a)"]


def test_fixed_part_keeps_subtraction_and_defaults_to_intercept():
    assert parse_formula("y ~ x - 1 + (1 | g)").fixed_text == "x - 1"
    assert parse_formula("y ~ (1 | g)").fixed_text == "1"
    assert parse_formula("y ~ (a + b)^2 + (1 | g)").fixed_text == "(a + b)^2"


def test_python_power_accepted():
    assert deparse(parse("y ~ I(x**2)")) == "y ~ I(x^2)"


def test_long_formula_deparses_as_r():
    f = parse_formula("langPOST ~ (IQ_verb + ses + sch_iqv + sch_ses)^2 + (IQ_verb + ses | schoolnr)")
    assert deparse_lines(f.tree) == [
        "langPOST ~ (IQ_verb + ses + sch_iqv + sch_ses)^2 + (IQ_verb + ",
        "    ses | schoolnr)",
    ]


@pytest.mark.parametrize(
    "bad, words",
    [
        ("y ~ (1 | g", "expected ')'"),
        ("y ~ x | g", "in parentheses"),
        ("y x + (1 | g)", "no '~'"),
        ("y ~ x", "no random-effects terms"),
        ("y ~ (| g)", "unexpected '|'"),
        ("y ~ (1 | )", "unexpected ')'"),
        ("~ x + (1 | g)", "response"),
        ("y ~ x + (1 | log(g))", "grouping factor"),
        ("y ~ x + (1 | g) +", "ends where a term was expected"),
        ("y ~ x $ z + (1 | g)", "unexpected character '$'"),
        ("y ~ x ~ z + (1 | g)", "'~' may appear only once"),
        ("y ~ x - (1 | g)", "cannot be subtracted"),
        ("", "no '~'"),
    ],
)
def test_malformed_formulas_raise_formula_error_quoting_the_formula(bad, words):
    with pytest.raises(FormulaError) as e:
        parse_formula(bad)
    assert words in str(e.value)
    assert repr(bad) in str(e.value)


def test_non_string_formula():
    with pytest.raises(FormulaError):
        parse_formula(42)
