"""The vignettes' Python code runs and its assertions hold (so the vignettes never rot)."""

import re
from pathlib import Path

import pytest

VIGNETTES = sorted((Path(__file__).parent.parent / "vignettes").glob("*.md"))


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_runs(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "mixedml" in path.stem or "caterpillar" in path.read_text():
        pytest.importorskip("sklearn" if "mixedml" in path.stem else "matplotlib")
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    assert blocks, "a vignette without code"
    namespace = {}
    for block in blocks:
        exec(compile(block, str(path), "exec"), namespace)
