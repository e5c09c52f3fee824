"""The one exception family lmmpy raises for problems in what the user gave it."""

from typing import Any

import numpy as np


class LmmError(ValueError):
    """Base class: bad input to lmmpy (data, formula, arguments)."""


class FormulaError(LmmError):
    """A formula lmmpy cannot read; the message quotes the formula."""

    def __init__(self, formula: str, problem: str) -> None:
        self.formula = formula
        self.problem = problem
        super().__init__(f"in formula {formula!r}: {problem}")


class DataError(LmmError):
    """The data do not fit the model (unknown column, bad response, too few levels...)."""


# Argument checks shared by every layer: each names the argument, so a bad value is a clear
# LmmError where it is given, not a wrong fit ("no" is truthy) or numpy's error further down.


def require_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; only True/False (Python's or numpy's) are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise LmmError(f"{name} must be True or False, not {value!r}")


def require_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum``; integers only (not 2.5, not True)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= minimum:
        return int(value)
    raise LmmError(f"{name} must be an integer >= {minimum}, not {value!r}")


def require_level(value: Any, name: str = "level") -> float:
    """A confidence level: a real number with 0 < level < 1."""
    if (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and 0 < value < 1
    ):
        return float(value)
    raise LmmError(f"{name} must be a number with 0 < {name} < 1 (0.95 for 95% intervals), not {value!r}")
