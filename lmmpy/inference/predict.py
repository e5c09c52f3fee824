"""Prediction on new data.

New data are materialised through the formula specs kept from fitting (formulaic's
ModelSpec), so categorical codings and transforms are exactly the training data's.  Levels of
a grouping factor not seen in fitting are an error naming them, or, with
``allow_new_levels=True``, get random effects of zero (their expectation), as in lme4.
As in lme4 (its default ``na.action = na.pass``), a row with a missing value in a variable
of the model predicts NaN, and the other rows are predicted as without it; a missing
grouping value is a level the fit has not seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from formulaic.errors import FormulaicError

from ..errors import DataError, FormulaError, require_bool
from ..formula.bars import parse_formula
from ..formula.design import CONTEXT, names_in, level_labels
from ..formula.frames import as_pandas
from ..formula.parser import deparse, parse


def _selected_terms(fit, re_form):
    """Indices of the random-effects terms re_form keeps: all (None), none ("~0", NA), or
    those whose (lhs | group) appear in a formula such as "~ (1 | Subject)"."""
    terms = fit.design.reterms
    if re_form is None:
        return list(range(len(terms)))
    if isinstance(re_form, float) and np.isnan(re_form):
        return []
    text = str(re_form).strip()
    if text.replace(" ", "") in ("~0", "~1", "NA", "0"):
        return []
    bars = parse_formula("y " + text if text.startswith("~") else "y ~ " + text).bars
    wanted = {(deparse(b.lhs), b.group_name) for b in bars}
    keep = [i for i, t in enumerate(terms) if (t.lhs, t.group) in wanted]
    if len(keep) != len(wanted):
        known = ", ".join(f"({t.lhs} | {t.group})" for t in terms)
        raise FormulaError(text, f"re_form names random-effects terms the model does not have ({known})")
    return keep


def new_data_matrix(spec, newdata, what, **overrides) -> np.ndarray:
    """The model matrix of ``spec`` (a formulaic ModelSpec kept from fitting) for ``newdata``,
    so that codings and transforms are the fitting data's; a DataError naming ``what`` (e.g.
    "fixed-effects matrix") when the new data cannot give it."""
    try:
        return np.asarray(spec.get_model_matrix(newdata, context=CONTEXT, **overrides), dtype=float)
    except FormulaicError as e:
        raise DataError(f"cannot build the {what} for the new data: {e}") from None
    except KeyError as e:
        raise DataError(f"the new data lack column {e}") from None


def predict(fit, newdata=None, re_form=None, allow_new_levels=False) -> pd.Series:
    """Predictions X beta (+ offset) + Z b for ``newdata`` (default: the fitting data)."""
    newdata, rows, labels = prepared_rows(fit, newdata, re_form, allow_new_levels)
    if newdata is None:
        return fit.fitted.rename("predicted")
    out = np.full(len(newdata), np.nan)
    if rows.size:
        out[rows] = _predict_complete(fit, newdata.iloc[rows], {i: [lv[r] for r in rows] for i, lv in labels.items()})
    return pd.Series(out, index=newdata.index, name="predicted")


def prepared_rows(fit, newdata, re_form, allow_new_levels, extra_terms=()) -> tuple:
    """(new data, the positions of its complete rows, {kept term: each row's level label}) after
    the checks; (None, ...) for predictions of the fitting data with every term.  The rows are
    complete when the fixed part's, the kept terms' and the ``extra_terms``' variables are there."""
    if newdata is None:
        if re_form is None and not extra_terms:
            return None, None, None
        newdata = fit.design.frame
    newdata = as_pandas(newdata, "newdata")  # polars, pyarrow: converted once, here
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(
            f"newdata must be a pandas DataFrame (or a polars DataFrame or pyarrow Table), not {type(newdata).__name__}"
        )
    allow_new_levels = require_bool("allow_new_levels", allow_new_levels)
    design = fit.design
    terms = _selected_terms(fit, re_form)
    _check_new_data(fit, newdata, terms)
    labels = {i: _known_labels(design.reterms[i], newdata, allow_new_levels) for i in terms}
    # rows with a missing covariate predict NaN (lme4's na.pass); the others are predicted
    # from the complete rows alone, where NaN can still arise from a transform (log(-1))
    covariates = _covariates(fit, sorted(set(terms) | set(extra_terms)))
    missing = sorted(set(covariates) - set(newdata.columns))
    if missing:
        raise DataError(f"the new data lack column(s): {', '.join(missing)}")
    complete = newdata[covariates].notna().all(axis=1).to_numpy()
    return newdata, np.flatnonzero(complete), labels


def _covariates(fit, terms) -> list:
    """The columns of the fitting data that the fixed part and the kept terms' left-hand
    sides read (not the grouping columns: a missing level is an unseen one)."""
    design = fit.design
    used: list[tuple[str, bool]] = []
    for node in (design.formula.fixed, *design.formula.offsets):
        names_in(node, used)
    for i in terms:
        names_in(parse(design.reterms[i].lhs), used)
    return list(dict.fromkeys(nm for nm, _ in used if nm in design.frame.columns))


def _known_labels(term, newdata, allow_new_levels) -> list:
    """Each row's level label of the term's grouping factor, after checking that the fit knows
    every level -- unless ``allow_new_levels``; a missing value is a level the fit has not seen."""
    missing = [g for g in term.group_vars if g not in newdata.columns]
    if missing:
        raise DataError(f"the new data lack the grouping column(s) {', '.join(missing)}")
    labels = group_labels(newdata, term.group_vars)
    if not allow_new_levels:
        na = [g for g in term.group_vars if newdata[g].isna().any()]
        if na:
            raise DataError(
                f"missing values in the grouping column(s) {', '.join(map(repr, na))} of the "
                "new data; as in lme4, they are allowed only with allow_new_levels=True, which "
                "predicts those rows with random effects of zero"
            )
        known = set(term.levels)
        unseen = sorted({lv for lv in labels if lv not in known})
        if unseen:
            raise DataError(
                f"new levels of {term.group!r} not in the fit: {', '.join(unseen[:10])}"
                f"{' ...' if len(unseen) > 10 else ''} (allow_new_levels=True predicts "
                "them with random effects of zero)"
            )
    return labels


def _predict_complete(fit, newdata, labels) -> np.ndarray:
    """X beta (+ offset) + Z b for rows without missing covariates; ``labels``: the level
    labels of these rows for each kept term."""
    return linear_parts(fit, newdata, labels)[0]


def fixed_matrix(fit, newdata) -> np.ndarray:
    """The fit's fixed-effects matrix (its kept columns) for rows of new data."""
    design = fit.design
    X = new_data_matrix(design.fixed_spec, newdata, "fixed-effects matrix", na_action="ignore")
    if design.x_keep is not None:
        X = X[:, design.x_keep]
    if X.shape[1] != len(design.xnames):
        raise DataError("the new data give a fixed-effects matrix of another width than the fit's")
    return X


def term_matrix(term, newdata) -> np.ndarray:
    """A random-effects term's model matrix (its left-hand side) for rows of new data."""
    return new_data_matrix(term.spec, newdata, f"random-effects term ({term.lhs} | {term.group})", na_action="ignore")


def linear_parts(fit, newdata, labels) -> tuple:
    """(X beta (+ offset) + Z b, X, {term: (its model matrix, the level codes, -1 for unseen)})
    for rows without missing covariates; ``labels``: the rows' level labels for each kept term."""
    design = fit.design
    X = fixed_matrix(fit, newdata)
    eta = X @ fit.fixef.to_numpy()
    if design.offset_name and design.offset_name in newdata.columns:
        eta = eta + newdata[design.offset_name].to_numpy(dtype=float)
    if design.formula.offsets:  # offset(x) terms of the formula, evaluated on the new data
        eta = eta + design.formula_offset(newdata)
    parts = {}
    for i, term_labels in labels.items():
        t = design.reterms[i]
        Xr = term_matrix(t, newdata)
        zb, codes = known_level_effects(t, fit.b_terms[i], term_labels, Xr)
        eta = eta + zb
        parts[i] = (Xr, codes)
    return eta, X, parts


def known_level_effects(term, b, labels, Xr):
    """(Z b for rows whose level label the term knows, zero for the others; the level codes,
    -1 for unseen levels)."""
    index = {lv: j for j, lv in enumerate(term.levels)}
    codes = np.array([index.get(lv, -1) for lv in labels], dtype=int)
    out = np.zeros(len(codes))
    known = codes >= 0
    out[known] = np.einsum("nk,nk->n", Xr[known], b[codes[known]])
    return out, codes


def _check_new_data(fit, newdata, terms):
    """The columns the predictions need are there, and categorical fixed-effect variables
    have no levels the fit has not seen."""
    design = fit.design
    used: list[tuple[str, bool]] = []
    names_in(design.formula.fixed, used)
    for i in terms:
        names_in(parse(design.reterms[i].lhs), used)
        used += [(g, False) for g in design.reterms[i].group_vars]
    names = [nm for nm, _ in used if nm in design.frame.columns]
    missing = sorted({nm for nm in names if nm not in newdata.columns})
    if missing:
        raise DataError(f"the new data lack column(s): {', '.join(missing)}")
    fixed: list[tuple[str, bool]] = []
    names_in(design.formula.fixed, fixed)
    for nm in {nm for nm, _ in fixed if nm in design.frame.columns}:
        seen = design.levels_of(nm)
        if seen is not None:
            unseen = sorted(set(level_labels(newdata[nm].dropna().unique())) - seen)
            if unseen:
                raise DataError(
                    f"level(s) {', '.join(map(repr, unseen))} of {nm!r} were not in the data the model was fitted to"
                )


def group_labels(frame, names):
    """The grouping factor's level label of each row ("a" or "a:b"), as fitting labels them."""
    cols = [level_labels(frame[nm].to_numpy()) for nm in names]
    return [":".join(parts) for parts in zip(*cols)]
