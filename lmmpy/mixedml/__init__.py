"""mixedML: random effects around any regression model (see :mod:`.estimator`)."""

from .estimator import MixedML

__all__ = ["MixedML"]
