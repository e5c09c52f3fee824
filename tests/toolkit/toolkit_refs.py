"""Shared loaders for the toolkit tests: the bundled data with R's factor columns, and the
stored R references (tests/reference/toolkit/, made by toolkit_reference.R and toolkit_extra.R)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import lmmpy

REF = Path(__file__).resolve().parent.parent / "reference" / "toolkit"

FACTORS = {"mlbook2": ["schoolnr", "denomina", "sex"], "sleepstudy": ["Subject"]}


def load_ref(name: str) -> dict:
    return json.loads((REF / f"{name}.json").read_text())


def data_for(ref: dict) -> pd.DataFrame:
    """The reference's data set, its factors as R made them, and its subset of rows."""
    d = lmmpy.datasets.load(ref["dataset"])
    for f in FACTORS[ref["dataset"]]:
        d[f] = d[f].astype(str).astype("category")
    subset = ref.get("subset") or ""
    if subset == "schoolnr <= 80":
        d = d[d["schoolnr"].astype(int) <= 80].copy()
        d["schoolnr"] = d["schoolnr"].cat.remove_unused_categories()
    elif subset == "not (denomina 4 and sex 1)":
        d = d[~((d["denomina"] == "4") & (d["sex"] == "1"))].copy()
    elif subset == "Days <= 3":
        d = d[d["Days"] <= 3].copy()
    elif subset:
        raise AssertionError(f"unknown subset {subset!r}")
    return d


_FITS: dict = {}


def fit_for(ref: dict):
    """The reference's lmer fit, made once per (formula, subset, REML) for the whole session."""
    key = (ref["formula"], ref.get("subset") or "", bool(ref.get("REML", True)), ref["dataset"])
    if key not in _FITS:
        _FITS[key] = lmmpy.lmer(ref["formula"], data_for(ref), REML=key[2])
    return _FITS[key]
