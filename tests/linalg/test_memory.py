"""A model too large for memory fails at once with a clear MemoryLimitError saying how much it
would need, not with numpy's MemoryError (or the kernel's OOM killer) in the middle of a fit."""

import numpy as np
import pandas as pd
import pytest

import lmmpy
from lmmpy.errors import LmmError, MemoryLimitError
from lmmpy.linalg import memory
from lmmpy.linalg import gram
from lmmpy.linalg.gram import WeightedGram
import scipy.sparse as sp


def test_require_memory_names_the_need_and_what_is_available():
    with pytest.raises(MemoryLimitError, match=r"the thing needs about 3\.0 GB, and 1\.0 GB are available"):
        memory.require_memory(3 * 2**30, "the thing", available=2**30)
    memory.require_memory(2**20, "the thing", available=2**30)  # enough: no error


def test_format_bytes():
    assert memory.format_bytes(5 * 2**20) == "5 MB"
    assert memory.format_bytes(1.5 * 2**30) == "1.5 GB"
    assert memory.format_bytes(2 * 2**40) == "2.0 TB"


def test_small_needs_are_not_checked(monkeypatch):
    """Below CHECK_FLOOR_BYTES the machine's memory is not read (it costs more than the
    check could save); from there it is."""
    calls = []
    monkeypatch.setattr(memory, "available_bytes", lambda: calls.append(1) or 2**10)
    memory.require_memory(memory.CHECK_FLOOR_BYTES - 1, "a small block")
    assert calls == []
    with pytest.raises(MemoryLimitError):
        memory.require_memory(memory.CHECK_FLOOR_BYTES, "a block")
    assert calls == [1]


def test_available_memory_is_known_here():
    have = memory.available_bytes()
    assert have is None or have > 0


def test_two_huge_crossed_factors_fail_before_the_fit():
    """150,000 x 149,999 crossed levels: the dense tail alone would be 150,000^2 doubles
    (168 GB) a copy.  The error is an LmmError (what the user gave cannot be fitted here)."""
    n = 300_000
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.normal(size=n), "a": np.arange(n) % 150_000, "b": rng.permutation(n) % 149_999})
    with pytest.raises(MemoryLimitError, match=r"cannot fit in memory: the dense 150,001 x 150,001 block") as e:
        lmmpy.lmer("y ~ 1 + (1 | a) + (1 | b)", d)
    assert isinstance(e.value, LmmError)
    assert "TB" in str(e.value) and "available" in str(e.value)


def test_stored_pairs_beyond_memory_fail_with_the_count(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**10)
    monkeypatch.setattr(memory, "CHECK_FLOOR_BYTES", 0)  # a small block checked too
    monkeypatch.setattr(gram, "DENSE_SPEEDUP", 0.0)  # every level stored
    monkeypatch.setattr(gram, "STORED_BUILD", 0.0)
    A = sp.random(40, 300, density=0.2, random_state=np.random.default_rng(2), format="csc")
    with pytest.raises(MemoryLimitError, match=r"stored pairs of a 40-row block needs about"):
        WeightedGram(A, budget=10**9)
