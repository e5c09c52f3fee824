"""lme4 glmer reference fits (tests/reference/glmm/*.json, made by glmer_reference.R and
glmer_reference_extra.R there; R is never run here) and lmmpy's fits of the same models,
each made once per session: by lmmpy's optimizer, or evaluated at lme4's estimates."""

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import lmmpy

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "tests" / "reference" / "glmm"
SPEC = pd.concat(
    [
        pd.read_csv(REF / "models.tsv", sep="\t", keep_default_na=False),
        pd.read_csv(REF / "models_extra.tsv", sep="\t", keep_default_na=False),
    ],
    ignore_index=True,
).fillna("")
SPEC = SPEC.set_index("id")


@functools.lru_cache(maxsize=None)
def reference(model_id: str) -> dict:
    ref = json.loads((REF / f"{model_id}.json").read_text())
    ref["theta"] = list(np.atleast_1d(ref["theta"]))
    return ref


def load_data(name: str) -> pd.DataFrame:
    """The data of a reference: the package's bundled CSVs (data/, read from this source
    tree) or the simulated ones beside the references."""
    for p in (ROOT / "data" / f"{name}.csv", ROOT / "data" / f"{name}.csv.gz", REF / "data" / f"{name}.csv"):
        if p.exists():
            return pd.read_csv(p)
    raise FileNotFoundError(name)


def model_inputs(model_id: str):
    s = SPEC.loc[model_id]
    d = load_data(s["dataset"])
    for f in filter(None, str(s["factors"]).split(",")):
        d[f] = d[f].astype(str).astype("category")
    weights = None
    if s["weights"]:
        d[".w"] = d[s["weights"]]  # the R script's name for the weights column (the summary prints it)
        weights = ".w"
    offset = None
    if s.get("offset", ""):
        assert s["offset"] == "log(exposure)"
        d["log(exposure)"] = np.log(d["exposure"])  # a column named as R prints the offset
        offset = "log(exposure)"
    family = getattr(lmmpy.families, s["family"])(link=s["link"])
    return s, d, family, weights, offset


@functools.lru_cache(maxsize=None)
def fitted(model_id: str):
    """(lmmpy's fit, the warnings it gave)."""
    s, d, family, weights, offset = model_inputs(model_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = lmmpy.glmer(
            s["formula"], d, family=family, nAGQ=int(s["nAGQ"]), weights=weights, offset=offset, data_name="d"
        )
    return fit, [str(w.message) for w in caught]


@functools.lru_cache(maxsize=None)
def at_lme4(model_id: str):
    """lmmpy's model evaluated at lme4's estimates (theta, beta)."""
    s, d, family, weights, offset = model_inputs(model_id)
    ref = reference(model_id)
    design = lmmpy.glformula(s["formula"], d, weights=weights, offset=offset)
    model = lmmpy.mk_glmer_devfun(design, family, nAGQ=int(s["nAGQ"]))
    opt = lmmpy.optimize_glmer(model, at=(ref["theta"], list(ref["fixef"].values())))
    return lmmpy.mk_glmer_fit(model, opt, data_name="d")
