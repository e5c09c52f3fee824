"""A progress line for long work (profiles, the bootstrap): one line on stderr, rewritten."""

from __future__ import annotations

import sys
import time

import numpy as np


PROGRESS_SECONDS = 5.0  # by default, work projected to take longer than this reports its progress
PROGRESS_INTERVAL = 0.25  # seconds between rewrites of the line


class Progress:
    """One line on stderr, rewritten as long work goes on: ``label: done/total unit (note),
    seconds taken and about how many are left``.  ``on``: True, False, or None to turn it on
    as soon as the time taken so far projects a total above PROGRESS_SECONDS (the first
    estimate comes from the first step's time)."""

    def __init__(self, label: str, total: int, unit: str = "", on=None):
        self.label, self.total, self.unit, self.on = label, total, unit, on
        self.start = time.perf_counter()
        self.last = -np.inf  # when the line was last written
        self.width = 0  # its length then
        self.shown = False

    def update(self, done: float, note: str = ""):
        """``done`` of the total units finished (fractions allowed)."""
        if self.on is False or done <= 0:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        projected = elapsed * self.total / done
        if self.on is None:
            if projected <= PROGRESS_SECONDS:
                return
            self.on = True
        if now - self.last < PROGRESS_INTERVAL and done < self.total:
            return
        line = f"{self.label}: {int(done)}/{self.total}" + (f" {self.unit}" if self.unit else "")
        line += (f" ({note})" if note else "") + f", {elapsed:.1f} s"
        if done < self.total:
            line += f", about {max(0.0, projected - elapsed):.0f} s left"
        print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)
        self.last, self.width, self.shown = now, len(line), True

    def close(self):
        """End the line (if one was written)."""
        if self.shown:
            print(file=sys.stderr, flush=True)
            self.shown = False
