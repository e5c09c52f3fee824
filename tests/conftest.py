"""Shared fixtures: lme4 reference fits (tests/reference/*.json, made by R; R is never run
here) and lmmpy fits of the same models, each fitted once per test session."""

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.linalg import gram

REF_DIR = Path(__file__).parent / "reference"
# the shared lme4 reference models, and more made with the same R script for formula syntax
# they do not cover (reference/syntax/)
_SPECS = [
    (REF_DIR, pd.read_csv(REF_DIR / "models.tsv", sep="\t")),
    (REF_DIR / "syntax", pd.read_csv(REF_DIR / "syntax" / "models.tsv", sep="\t")),
]
SPEC = pd.concat([s for _, s in _SPECS], ignore_index=True)
REF_PATH = {mid: d / f"{mid}.json" for d, s in _SPECS for mid in s["id"]}
MODEL_IDS = list(SPEC["id"])
SLOW = {"insteval_crossed_reml", "insteval_deptservice_reml"}


def model_params():
    """The reference model ids, the InstEval ones marked slow."""
    return [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in MODEL_IDS]


@functools.lru_cache(maxsize=None)
def reference(model_id):
    ref = json.loads(REF_PATH[model_id].read_text())
    ref["theta"] = list(np.atleast_1d(ref["theta"]))
    return ref


def spec(model_id):
    return SPEC.set_index("id").loc[model_id]


@functools.lru_cache(maxsize=None)
def model_data(model_id):
    """The data set as the reference script prepared it (factor columns as in models.tsv)."""
    s = spec(model_id)
    d = lmmpy.datasets.load(s["dataset"])
    for f in str(s["factors"]).split(","):
        d[f] = d[f].astype(str).astype("category")
    return d


# The two ways the Schur complement's weighted Gram (lmmpy.linalg.gram) can go: pairs stored
# within the budget, and nothing stored (budget 0: each level dense by BLAS or formed by
# sparse products each time, by cost).  Tests of the reference models, the gradient and EM run
# on both (``pytestmark = pytest.mark.usefixtures("pair_route")``), so both routes stay right.
PAIR_ROUTES = {"stored": None, "unstored": 0}


@pytest.fixture(params=list(PAIR_ROUTES))
def pair_route(request, monkeypatch):
    """Every WeightedGram made in the test on one route: pairs stored, or none (budget 0)."""
    budget = PAIR_ROUTES[request.param]
    if budget is not None:
        monkeypatch.setattr(gram, "PAIR_BUDGET", budget)
    return request.param


def fitted(model_id, at_lme4_theta=False):
    """lmmpy's fit of a reference model (or the model evaluated at lme4's theta), on the
    route the pair budget in force gives (cached per route)."""
    return _fitted(model_id, at_lme4_theta, gram.PAIR_BUDGET)


@functools.lru_cache(maxsize=None)
def _fitted(model_id, at_lme4_theta, budget):
    s = spec(model_id)
    kw = dict(start=reference(model_id)["theta"], optimizer=None) if at_lme4_theta else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmpy.SingularFitWarning)
        if at_lme4_theta:  # lme4's theta need not pass lmmpy's checks (lme4's own did not, once)
            warnings.simplefilter("ignore", lmmpy.ConvergenceWarning)
        return lmmpy.lmer(s["formula"], model_data(model_id), REML=bool(s["REML"]), data_name="d", **kw)
