"""The memory a model's dense and stored blocks need, against what the machine has.

A model too large fails before its blocks are made, with the numbers (a
:class:`lmmpy.errors.MemoryLimitError`), not with numpy's MemoryError in the middle of a fit or
with the kernel stopping the process once pages are touched.
"""

from __future__ import annotations

import os

from ..errors import MemoryLimitError

# dense N x N arrays of a fit with an N-wide tail at its peak: the cross-products, the working
# factor, the weighted Gram's buffer, the gradient's lead inverse and C, the level products'
# copy of C and the owned factors the model caches (lmmpy.fit.deviance.FACTOR_CACHE_SIZE)
TAIL_COPIES = 10
# below this a need is not checked: reading /proc/meminfo costs ~50 microseconds, a twentieth
# of a small model's fit, and a machine without 16 MB to spare fails before lmmpy could say so
CHECK_FLOOR_BYTES = 2**24
PAIR_BYTES = 40  # a stored pair while S is built: flat position, product, row index, S itself


def available_bytes() -> int | None:
    """The memory available to a new allocation (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in the unit that reads best (MB, GB, TB)."""
    for unit, size in (("TB", 2**40), ("GB", 2**30)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 2**20:,.0f} MB"


def tail_bytes(n_tail: int) -> int:
    """The memory of a fit's dense N x N tail blocks (TAIL_COPIES of them)."""
    return TAIL_COPIES * 8 * int(n_tail) ** 2


def require_memory(need: int, what: str, available: int | None = None) -> None:
    """Raise MemoryLimitError if ``need`` bytes exceed the memory available (``available``, or
    the machine's); ``what`` says what needs them.  Needs below CHECK_FLOOR_BYTES pass unchecked."""
    if need < CHECK_FLOOR_BYTES:
        return
    have = available_bytes() if available is None else available
    if have is not None and need > have:
        raise MemoryLimitError(
            f"this model cannot fit in memory: {what} needs about {format_bytes(need)}, "
            f"and {format_bytes(have)} are available"
        )


def tail_requirement(n_tail: int, q_tail: int, p: int) -> str:
    """What the dense tail is, in words, for the error message."""
    return (
        f"the dense {n_tail:,} x {n_tail:,} block of the later random-effects terms "
        f"({q_tail:,} columns) with the fixed effects and the response ({p + 1}), "
        f"{format_bytes(8 * n_tail**2)} a copy, {TAIL_COPIES} copies at the peak of a fit"
    )
