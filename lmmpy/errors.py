"""The one exception family lmmpy raises for problems in what the user gave it."""


class LmmError(ValueError):
    """Base class: bad input to lmmpy (data, formula, arguments)."""


class FormulaError(LmmError):
    """A formula lmmpy cannot read; the message quotes the formula."""

    def __init__(self, formula, problem):
        self.formula = formula
        self.problem = problem
        super().__init__(f"in formula {formula!r}: {problem}")


class DataError(LmmError):
    """The data do not fit the model (unknown column, bad response, too few levels...)."""
