"""The design: X, the random-effects terms and Z, with lme4's dimensions."""

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
