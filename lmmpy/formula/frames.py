"""Data frames other than pandas, converted once where the data enter lmmpy.

lmmpy works on pandas; a polars DataFrame or a pyarrow Table (or RecordBatch) given as
``data=`` (or ``newdata=``) is converted here, directly and without importing polars or
pyarrow unless such an object is passed (both are optional), so that everything after the entry
-- the formula's evaluation, the results -- sees pandas and returns pandas.

- polars: column by column through numpy (no pyarrow needed).  An ``Enum`` column becomes a
  pandas categorical with the Enum's categories in their order (a factor with those levels,
  as in R); a ``Categorical`` column becomes its strings, so that its levels are sorted as R's
  ``factor()`` sorts strings (a polars Categorical's own order is the order of first
  appearance, which depends on the rows' order).  Nulls become NaN/None, dates datetime64.
- pyarrow: ``to_pandas()`` (a dictionary column becomes a categorical with the dictionary's
  order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError


def _package(obj) -> str:
    return type(obj).__module__.split(".")[0]


def is_foreign_frame(obj: Any) -> bool:
    """A polars DataFrame/LazyFrame or a pyarrow Table/RecordBatch (by its class's package,
    so neither package is imported to tell)."""
    return (_package(obj) == "polars" and type(obj).__name__ in ("DataFrame", "LazyFrame")) or (
        _package(obj) == "pyarrow" and type(obj).__name__ in ("Table", "RecordBatch")
    )


def as_pandas(data: Any, what: str = "data") -> Any:
    """``data`` as a pandas DataFrame if it is a polars or pyarrow frame; anything else is
    returned as it is (the caller checks it).  ``what`` names the argument in errors."""
    if not is_foreign_frame(data):
        return data
    if _package(data) == "pyarrow":
        try:
            return data.to_pandas()
        except Exception as e:  # noqa: BLE001 - pyarrow's errors name no lmmpy argument
            raise DataError(f"{what}: this pyarrow {type(data).__name__} does not convert to pandas ({e})") from None
    if type(data).__name__ == "LazyFrame":
        raise DataError(f"{what} is a polars LazyFrame: collect() it first (lmmpy needs the rows)")
    return _from_polars(data, what)


def _from_polars(frame, what: str) -> pd.DataFrame:
    import polars as pl

    columns = {}
    for name in frame.columns:
        s = frame.get_column(name)
        try:
            if s.dtype == pl.Enum:
                categories = list(s.dtype.categories)  # the Enum's fixed list, in its order
                columns[name] = pd.Categorical(s.to_list(), categories=categories)
            elif s.dtype == pl.Categorical or s.dtype == pl.String:
                columns[name] = np.array(s.to_list(), dtype=object)
            else:
                columns[name] = s.to_numpy()
        except Exception as e:  # noqa: BLE001 - a column of a type numpy cannot hold
            raise DataError(
                f"{what}: the polars column {name!r} ({s.dtype}) does not convert to pandas ({e})"
            ) from None
    return pd.DataFrame(columns)
