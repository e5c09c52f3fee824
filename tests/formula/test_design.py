"""The design: X, the random-effects terms and Z, with lme4's dimensions."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy import DataError
from lmmpy.formula.design import build_design, grouping_factor, r_name

from conftest import MODEL_IDS, model_data, reference, spec


@pytest.mark.parametrize("mid", MODEL_IDS)
def test_dimensions_match_lme4(mid):
    s, ref = spec(mid), reference(mid)
    D = build_design(s["formula"], model_data(mid))
    assert D.n == ref["nobs"]
    assert D.theta_names() == list(np.atleast_1d(ref["theta_names"]))
    assert len(D.theta_start()) == len(ref["theta"])
    ngrps = {}
    for t in D.reterms:
        ngrps.setdefault(t.group, t.nlevels)
    assert ngrps == ref["ngrps"]
    assert list(D.xnames) == list(ref["fixef"])
    q = sum(len(set(zip(r["term"], r["level"]))) for r in ref["ranef"])
    assert D.q == q
    Z = D.Z()
    assert Z.shape == (D.n, D.q)
    assert Z.nnz <= D.n * sum(t.k for t in D.reterms)


def test_z_layout_levels_outer_terms_inner():
    d = lmmpy.datasets.load("sleepstudy")
    D = build_design("Reaction ~ Days + (Days | Subject)", d)
    t = D.reterms[0]
    Z = t.Z().toarray()
    i = 25  # an observation
    lvl = t.codes[i]
    assert Z[i, 2 * lvl] == 1.0 and Z[i, 2 * lvl + 1] == d["Days"].iloc[i]
    assert np.count_nonzero(Z[i]) <= 2


def test_theta_start_and_bounds_lme4_order():
    d = lmmpy.datasets.load("mlbook2")
    D = build_design("langPOST ~ IQ_verb + (IQ_verb + ses | schoolnr)", d)
    assert list(D.theta_lower()) == [0, -np.inf, -np.inf, 0, -np.inf, 0]
    assert list(D.theta_start()) == [1, 0, 0, 1, 0, 1]


def test_terms_ordered_by_decreasing_levels_as_lme4():
    d = lmmpy.datasets.load("Pastes")
    D = build_design("strength ~ 1 + (1 | batch) + (1 | cask:batch)", d)
    assert [t.group for t in D.reterms] == ["cask:batch", "batch"]


def test_categorical_slope_full_dummy_coding():
    d = lmmpy.datasets.load("Pastes")
    D = build_design("strength ~ 1 + (0 + cask | batch)", d)
    assert D.reterms[0].cnames == ["caska", "caskb", "caskc"]
    assert np.all(D.reterms[0].X.sum(axis=1) == 1)


def test_formulaic_syntax_in_fixed_part():
    d = lmmpy.datasets.load("mlbook2")
    D = build_design("langPOST ~ C(sex) + np.log(IQ_verb + 10) + I(IQ_verb^2) + IQ_verb*ses + (1 | schoolnr)", d)
    assert D.xnames == [
        "(Intercept)",
        "factor(sex)1",
        "np.log(IQ_verb + 10)",
        "I(IQ_verb^2)",
        "IQ_verb",
        "ses",
        "IQ_verb:ses",
    ]
    assert np.allclose(D.X[:, 3], d["IQ_verb"] ** 2)
    assert np.allclose(D.X[:, 2], np.log(d["IQ_verb"] + 10))


def test_r_names():
    assert r_name("Intercept") == "(Intercept)"
    assert r_name("service[T.1]") == "service1"
    assert r_name("C(x)[T.b]") == "factor(x)b"
    assert r_name("ses:IQ_verb", ["IQ_verb", "ses"]) == "IQ_verb:ses"
    assert r_name("I(x ** 2)") == "I(x^2)"


def test_interaction_grouping_factor_levels():
    df = pd.DataFrame({"a": ["x", "y", "x", "y"], "b": [1, 1, 2, 2]})
    codes, levels = grouping_factor(df, ["a", "b"])
    assert levels == ["x:1", "x:2", "y:1", "y:2"]
    assert [levels[c] for c in codes] == ["x:1", "y:1", "x:2", "y:2"]


def test_numeric_grouping_column_levels_sorted_numerically():
    df = pd.DataFrame({"g": [10, 2, 1, 2]})
    codes, levels = grouping_factor(df, ["g"])
    assert levels == ["1", "2", "10"]


def test_factors_argument_makes_numeric_column_categorical():
    d = lmmpy.datasets.load("mlbook2")
    D = build_design("langPOST ~ sex + (1 | schoolnr)", d, factors=["sex"])
    assert D.xnames == ["(Intercept)", "sex1"]
    with pytest.raises(DataError, match="does not use"):
        build_design("langPOST ~ 1 + (1 | schoolnr)", d, factors=["sex"])


# -- numeric parts without formulaic (ModelVariables.plain_matrix) ---------------------------


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + (Days | Subject)",
        "Reaction ~ 0 + Days + (0 + Days | Subject)",
        "Reaction ~ Days - 1 + (1 | Subject)",
        "Reaction ~ -1 + Days + Days + (1 + Days | Subject)",
        "Reaction ~ 1 + (1 | Subject)",
    ],
)
def test_plain_numeric_parts_are_formulaics(formula):
    from lmmpy.formula.design import ModelVariables

    sleep = lmmpy.datasets.load("sleepstudy")
    design = lmmpy.lformula(formula, sleep)
    for part, X, names, part_spec in [(design.formula.fixed, design.X, design.xnames, design.fixed_spec)] + [
        (b.lhs, t.X, t.cnames, t.spec) for b, t in zip(design.formula.bars, design.reterms)
    ]:
        assert part_spec._spec is None  # built without formulaic: its ModelSpec only when needed
        variables = ModelVariables(formula, ["Reaction", "Days", "Subject"], {}, "Reaction")
        mm, fnames = variables.model_matrix(part, design.frame, "part")
        assert names == fnames and np.array_equal(X, np.asarray(mm, dtype=float))
        assert list(part_spec.get_model_matrix(sleep.head(3)).columns) == list(mm.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0 + Days in the bar: a singular fit
        fit = lmmpy.lmer(formula, sleep)
    assert np.allclose(fit.predict(sleep.head(5)), fit.fitted.head(5), rtol=1e-12)


def test_other_parts_go_to_formulaic():
    sleep = lmmpy.datasets.load("sleepstudy").assign(g=lambda d: (d["Days"] > 4).astype(str))
    for formula in ["Reaction ~ Days * g + (1 | Subject)", "Reaction ~ log(Days + 1) + (1 | Subject)"]:
        design = lmmpy.lformula(formula, sleep)
        assert design.fixed_spec._spec is not None
    design = lmmpy.lformula("Reaction ~ Days + (1 | Subject)", sleep, factors=["Days"])
    assert design.fixed_spec._spec is not None and len(design.xnames) == 10


def test_unused_categories_of_a_grouping_factor_are_dropped_in_order():
    sleep = lmmpy.datasets.load("sleepstudy")
    d = sleep[sleep["Subject"].astype(str) != "309"].copy()
    d["Subject"] = d["Subject"].cat.reorder_categories(list(reversed(d["Subject"].cat.categories)))
    t = lmmpy.lformula("Reaction ~ Days + (1 | Subject)", d).reterms[0]
    assert t.levels == [c for c in map(str, reversed(sleep["Subject"].cat.categories)) if c != "309"]
    assert [t.levels[c] for c in t.codes] == list(d["Subject"].astype(str))
