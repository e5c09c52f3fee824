"""lmmpy beside other implementations: ``lmmpy.compare.statsmodels(formula, data)``."""

from .bridge import Comparison, compare_fit, statsmodels, translate

__all__ = ["Comparison", "compare_fit", "statsmodels", "translate"]
