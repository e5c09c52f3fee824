"""The bundled data sets (see data/README.md): ``load(name)`` returns a DataFrame whose
grouping columns are categoricals, as the R packages that ship them define them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .errors import LmmError

if TYPE_CHECKING:  # importlib.abc's until 3.11, importlib.resources.abc's after
    from importlib.abc import Traversable

# data set -> its grouping (factor) columns
FACTORS = {
    "sleepstudy": ["Subject"],
    "Dyestuff": ["Batch"],
    "Dyestuff2": ["Batch"],
    "Penicillin": ["plate", "sample"],
    "Pastes": ["batch", "cask", "sample"],
    "InstEval": ["s", "d", "dept", "service", "studage", "lectage"],
    "mlbook2": ["schoolnr"],
    "cbpp": ["herd", "period"],
    "grouseticks": ["INDEX", "BROOD", "YEAR", "LOCATION"],
    "VerbAgg": ["item", "id"],
}
# compressed in the package (gzip): the large ones
COMPRESSED = {"VerbAgg"}


def names() -> list[str]:
    """Names of the bundled data sets."""
    return sorted(FACTORS)


def _canonical(name: str) -> str:
    for n in FACTORS:
        if n.lower() == str(name).lower():
            return n
    if "/" in str(name) or "\\" in str(name) or str(name).lower().endswith(".csv"):
        raise LmmError(f"no bundled data set {name!r}: that names a file; read it with pandas.read_csv")
    raise LmmError(f"no bundled data set {name!r}; the bundled ones are: {', '.join(names())}")


def path(name: str) -> Traversable | Path:
    """Path of a bundled data set's CSV file."""
    name = _canonical(name)
    file = f"{name}.csv" + (".gz" if name in COMPRESSED else "")
    found = resources.files("lmmpy.data").joinpath(file)
    if not found.is_file():  # a source tree run beside another install of lmmpy.data: its own data/
        local = Path(__file__).resolve().parent.parent / "data" / file
        if local.is_file():
            return local
    return found


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set, its grouping columns as (unordered) categoricals."""
    name = _canonical(name)
    with resources.as_file(path(name)) as p:
        df = pd.read_csv(p)
    for col in FACTORS[name]:
        df[col] = df[col].astype("category")  # numeric codes keep their numeric order
    return df
