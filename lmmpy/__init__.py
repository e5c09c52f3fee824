"""lmmpy: linear mixed-effects models with lme4's formulas and lme4's numbers."""
from . import compare, datasets
from .errors import DataError, FormulaError, LmmError
from .fit.checks import LmerControl
from .formula.design import RankDeficientWarning
from .mixedml import MixedML
from .lmer import lformula, lmer, mk_lmer_devfun, mk_lmer_fit, optimize_lmer
from .results.inference import anova, tidy
from .results.model import ConvergenceWarning, LmerFit, SingularFitWarning

__version__ = "0.1.0"

__all__ = ["anova", "tidy", "LmerControl", "RankDeficientWarning", "lmer", "lformula", "mk_lmer_devfun", "optimize_lmer", "mk_lmer_fit", "LmerFit",
           "LmmError", "FormulaError", "DataError", "SingularFitWarning", "ConvergenceWarning",
           "compare", "datasets", "MixedML", "__version__"]
