"""Passes over the partitions of Dask data after a fit: fitted values, residuals, predictions
and the summary's scaled-residual quantiles.

The workers get a :class:`RowPass` -- the formula's specs and levels, beta, the conditional
modes b and sigma: the size of the model, not of the data --, materialise their partitions
again (:meth:`lmmpy.formula.partition.PartitionSpec.materialise`) and return a pandas Series
per partition, indexed by the partition's complete rows: together a Dask Series.

The scaled residuals' quantiles are exact (the residuals gathered and sorted) for up to
``EXACT_QUANTILE_ROWS`` rows; beyond, Min and Max are exact and the quartiles are Dask's
approximate ones (per-partition percentiles merged), and the summary says so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula.partition import PartitionedDesign
from .predict import predict

if TYPE_CHECKING:  # dask is imported only when Dask data are fitted
    from dask.dataframe import Series as DaskSeries

EXACT_QUANTILE_ROWS = 5_000_000  # residuals gathered in the client for exact quantiles (40 MB)
APPROXIMATE_QUANTILES = "quartiles approximate (Dask's per-partition percentiles, merged); Min and Max exact"


@dataclass
class RowPass:
    """What a pass over the rows needs of a fit; reads as a fit for :func:`predict`."""

    design: PartitionedDesign
    fixef: pd.Series
    b_terms: list
    sigma: float

    def fitted(self, part: pd.DataFrame) -> pd.Series:
        """X beta (+ offset) + Z b on the partition's complete rows."""
        design, _ = self.design.partition_spec.materialise(part)
        if design is None:
            return pd.Series(np.zeros(0), index=part.index[:0], name="fitted")
        return pd.Series(self._eta(design), index=design.row_index, name="fitted")

    def _eta(self, design) -> np.ndarray:
        eta = design.X[:, self.design.x_keep] @ self.fixef.to_numpy()
        if design.offset is not None:
            eta = eta + design.offset
        for t, b in zip(design.reterms, self.b_terms):
            eta = eta + np.einsum("nk,nk->n", t.X, b[t.codes])
        return eta

    def residuals(self, part: pd.DataFrame, type: str = "response", scaled: bool = False) -> pd.Series:
        """y - fitted (``type="pearson"``: times sqrt(w)); ``scaled`` divides by sigma."""
        design, _ = self.design.partition_spec.materialise(part)
        if design is None:
            return pd.Series(np.zeros(0), index=part.index[:0], name="residuals")
        r = design.y - self._eta(design)
        if type == "pearson" and design.weights is not None:
            r = r * np.sqrt(design.weights)
        if scaled:
            r = r / self.sigma
        return pd.Series(r, index=design.row_index, name="residuals")

    def predict(self, part: pd.DataFrame, re_form=None, allow_new_levels: bool = False) -> pd.Series:
        """Predictions for a pandas frame (a partition), its categorical variables coded with
        the whole data's levels first, as the specs were fitted (a level the fit has not seen
        stays one, for predict's check to name it)."""
        spec = self.design.partition_spec
        coded = {}
        for c in spec.columns.categorical:
            if c in part.columns:
                values = part[c].astype(str) if c in spec.columns.factors else part[c]
                known = list(spec.levels[c])
                unseen = [v for v in pd.unique(values.dropna()) if v not in set(known)]
                coded[c] = pd.Categorical(values, categories=known + unseen)
        return predict(
            self, part.assign(**coded) if coded else part, re_form=re_form, allow_new_levels=allow_new_levels
        )


def _node(row_pass):
    """The RowPass as one task of the graph (sent once to each worker that needs it)."""
    import dask

    return dask.delayed(row_pass, name=f"lmmpy-rowpass-{uuid.uuid4().hex}")


def _fitted(part, rp):
    return rp.fitted(part)


def _residuals(part, rp, type, scaled):
    return rp.residuals(part, type, scaled)


def _predict(part, rp, re_form, allow_new_levels):
    return rp.predict(part, re_form, allow_new_levels)


def fitted_series(row_pass: RowPass, ddf) -> DaskSeries:
    """The fitted values of every complete row of ``ddf``: a Dask Series."""
    return ddf.map_partitions(_fitted, _node(row_pass), meta=pd.Series(dtype=float, name="fitted"))


def residual_series(row_pass: RowPass, ddf, type: str = "response", scaled: bool = False) -> DaskSeries:
    """The residuals of every complete row of ``ddf``: a Dask Series."""
    meta = pd.Series(dtype=float, name="residuals")
    return ddf.map_partitions(_residuals, _node(row_pass), type, bool(scaled), meta=meta)


def predict_series(row_pass: RowPass, ddf, re_form=None, allow_new_levels: bool = False) -> DaskSeries:
    """Predictions for every row of the Dask DataFrame ``ddf`` (NaN where a covariate is
    missing, as for pandas new data): a Dask Series."""
    if not hasattr(ddf, "map_partitions"):
        raise DataError(f"newdata must be a pandas or Dask DataFrame, not {type(ddf).__name__}")
    meta = pd.Series(dtype=float, name="predicted")
    return ddf.map_partitions(_predict, _node(row_pass), re_form, allow_new_levels, meta=meta)


def residual_quantiles(scaled_residuals, n: int) -> tuple:
    """(Min, 1Q, Median, 3Q, Max of the scaled residuals, None or how they were computed)."""
    import dask

    probs = [0.25, 0.5, 0.75]
    if n <= EXACT_QUANTILE_ROWS:
        values = scaled_residuals.compute().to_numpy()
        return np.quantile(values, [0.0, *probs, 1.0]), None
    lo, hi, mid = dask.compute(scaled_residuals.min(), scaled_residuals.max(), scaled_residuals.quantile(probs))
    return np.array([lo, *np.asarray(mid, dtype=float), hi]), APPROXIMATE_QUANTILES
