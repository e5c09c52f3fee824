"""lmmpy: linear mixed-effects models with lme4's formulas and lme4's numbers."""

from importlib.metadata import PackageNotFoundError, version as _version

from . import compare, datasets, families, plot  # plot: matplotlib is imported only when a plot is drawn
from .errors import DataError, FormulaError, LmmError
from .fit.checks import LmerControl
from .formula.design import RankDeficientWarning
from .mixedml import MixedML
from .lmer import lformula, lmer, mk_lmer_devfun, mk_lmer_fit, optimize_lmer
from .glmer import glformula, glmer, mk_glmer_devfun, mk_glmer_fit, optimize_glmer
from .fit.glmm_driver import GlmerControl
from .glmerfit import GlmerFit
from .inference.allfit import AllFit, allfit
from .inference.lrt import LRTResult, anova
from .inference.pbmodcomp import PBModComp, pbmodcomp
from .inference.tidy import tidy
from .inference.emmeans import EmmContrasts, EmmGrid, emmeans
from .inference.r2 import R2Nakagawa, r2_nakagawa
from .lmerfit import LmerFit
from .daskfit import DaskLmerFit
from .results.model import ConvergenceWarning, SingularFitWarning

try:
    __version__ = _version("lmmpy")  # the one place the version is written: pyproject.toml
except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "anova",
    "LRTResult",
    "allfit",
    "AllFit",
    "pbmodcomp",
    "PBModComp",
    "tidy",
    "emmeans",
    "EmmGrid",
    "EmmContrasts",
    "r2_nakagawa",
    "R2Nakagawa",
    "LmerControl",
    "RankDeficientWarning",
    "lmer",
    "lformula",
    "mk_lmer_devfun",
    "optimize_lmer",
    "mk_lmer_fit",
    "LmerFit",
    "glmer",
    "glformula",
    "mk_glmer_devfun",
    "optimize_glmer",
    "mk_glmer_fit",
    "GlmerFit",
    "GlmerControl",
    "families",
    "DaskLmerFit",
    "LmmError",
    "FormulaError",
    "DataError",
    "SingularFitWarning",
    "ConvergenceWarning",
    "compare",
    "datasets",
    "plot",
    "MixedML",
    "__version__",
]
