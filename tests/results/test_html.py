"""Every result object shows in Jupyter (``_repr_html_``): well-formed HTML -- parsed by the
standard library's html.parser, every tag closed in order -- that holds the result's numbers."""

import warnings
from html.parser import HTMLParser

import pytest

import lmmpy

VOID = {"br", "hr", "img", "input", "meta", "link", "col", "wbr"}


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.text, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(obj):
    markup = obj._repr_html_()
    assert isinstance(markup, str) and markup.strip()
    p = _Checker()
    p.feed(markup)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert {"pre", "table"} & set(p.tags), p.tags  # the text or a table
    return " ".join(" ".join(p.text).split())


@pytest.fixture(scope="module")
def fits():
    d = lmmpy.datasets.load("sleepstudy")
    return lmmpy.lmer("Reaction ~ Days + (Days | Subject)", d), lmmpy.lmer("Reaction ~ Days + (1 | Subject)", d)


def test_fit_and_summaries(fits):
    fit, _ = fits
    assert "Reaction ~ Days + (Days | Subject)" in parse(fit)
    assert "251.405" in parse(fit.summary())
    text = parse(fit.summary(ddf="satterthwaite"))
    assert "Satterthwaite" in text and "Pr(>|t|)" in text


def test_lrt_table(fits):
    fit, small = fits
    res = lmmpy.anova(small, fit)
    text = parse(res)
    assert "Data: data" in text and "m1: Reaction ~ Days + (Days | Subject)" in text and "Chisq" in text
    assert "<th>Pr(&gt;Chisq)</th>" in res._repr_html_()  # escaped, a column of the table


def test_pbmodcomp(fits):
    fit, small = fits
    res = lmmpy.pbmodcomp(fit, small, nsim=3, seed=1, progress=False)
    text = parse(res)
    assert "Bootstrap test" in text and "PBtest" in text and "LRT" in text
    assert "large : Reaction ~ Days + (Days | Subject)" in text


def test_allfit(fits):
    fit, _ = fits
    res = lmmpy.allfit(fit, optimizers=["l-bfgs-b", "em"])
    text = parse(res)
    assert "L-BFGS-B" in text and "EM" in text and "llik" in text and "sd_Days|Subject" in text


def test_comparison_with_statsmodels(fits):
    pytest.importorskip("statsmodels")
    fit, _ = fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' own convergence chatter
        res = lmmpy.compare.compare_fit(fit)
    text = parse(res)
    assert "lmmpy vs statsmodels MixedLM" in text and "difference" in text


def test_mixedml_summary():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    d = lmmpy.datasets.load("sleepstudy")
    m = lmmpy.MixedML.from_formula("Reaction ~ Days + (1 | Subject)", d, LinearRegression())
    assert "Subject" in parse(m.summary())
