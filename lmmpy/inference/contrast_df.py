r"""Standard errors and denominator df of linear functions L beta of the fixed effects, by the
three methods emmeans offers for lmer fits:

- ``"satterthwaite"``: SE^2 = L V L' with V = vcov; df by Satterthwaite's formula for the 1-df
  contrast L (:mod:`lmmpy.inference.satterthwaite`, lmerTest's computation);
- ``"kenward-roger"``: SE^2 = L Phi_A L' with Kenward and Roger's adjusted covariance and
  pbkrtest's Lb_ddf df (:mod:`lmmpy.inference.kenward_roger`; REML fits);
- ``"asymptotic"``: SE^2 = L V L', df = inf (normal quantiles and z ratios).

The pieces are computed once per fit and reused for every row of L.
"""

from __future__ import annotations

import numpy as np

from ..errors import LmmError
from .kenward_roger import lb_ddf, vcov_adjusted
from .satterthwaite import _contrast_df, _pieces

DDF_METHODS = ("satterthwaite", "kenward-roger", "asymptotic")


def ddf_method(ddf: str) -> str:
    """The method's canonical name ("Kenward-Roger", "kenward_roger", "KR" accepted)."""
    key = str(ddf).lower().replace("_", "-").replace(" ", "-")
    key = {"kr": "kenward-roger", "kenwardroger": "kenward-roger", "satterth": "satterthwaite"}.get(key, key)
    if key not in DDF_METHODS:
        raise LmmError(f"ddf={ddf!r}: use 'satterthwaite', 'kenward-roger' or 'asymptotic'")
    return key


class ContrastDf:
    """V (the covariance of beta-hat the method uses) and ``df(L)`` for a fit and a method."""

    def __init__(self, fit, ddf: str = "satterthwaite"):
        self.method = ddf_method(ddf)
        self._fit = fit
        if self.method == "kenward-roger":
            self.V, self._phi, self._P, self._W = vcov_adjusted(fit)
        else:
            self.V = fit.vcov.to_numpy()
            self._sat: tuple | None = None

    def se(self, L: np.ndarray) -> np.ndarray:
        """sqrt(diag(L V L')) for the rows of L."""
        L = np.atleast_2d(L)
        return np.sqrt(np.einsum("ij,jk,ik->i", L, self.V, L))

    def df(self, L: np.ndarray) -> np.ndarray:
        """The denominator df of each row of L (1-df contrasts)."""
        L = np.atleast_2d(L)
        if self.method == "asymptotic":
            return np.full(L.shape[0], np.inf)
        if self.method == "kenward-roger":
            return np.array([lb_ddf(row, self._phi, self._P, self._W) for row in L])
        if self._sat is None:
            self._sat = _pieces(self._fit)[:3]
        A, J, V = self._sat
        return np.array([_contrast_df(row, A, J, V) for row in L])
