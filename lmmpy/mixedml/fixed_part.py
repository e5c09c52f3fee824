"""The fixed part f of a mixedML model: any object with fit/predict, or a plain callable.

Each EM iteration trains f on the target y - Z b.  An estimator is deep-copied once (the
caller's object is left as it was, a pre-trained one keeps its training), then refitted in
place every iteration, so ``warm_start=True`` makes each iteration fine-tune the last one's
model.  A callable ``f(X, target)`` is trained however the user likes and returns either the
predictions at X or a fitted object with ``predict`` (needed to predict new data).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import LmmError


class LeastSquares:
    """Ordinary least squares with an intercept: the default fixed part, which makes a
    mixedML model a linear mixed model (``coef_``, ``intercept_`` as scikit-learn names them)."""

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        A = np.column_stack([np.ones(len(X)), X])
        coef, *_ = np.linalg.lstsq(A, np.asarray(y, float), rcond=None)
        self.intercept_, self.coef_ = float(coef[0]), coef[1:]
        return self

    def predict(self, X):
        return np.asarray(X, dtype=float) @ self.coef_ + self.intercept_


class FixedPart:
    """fit(X, target) -> predictions at X; predict(X_new)."""

    def __init__(self, estimator: Any) -> None:
        self.model: Any
        if estimator is None:
            self.model, self.fun = LeastSquares(), None
        elif hasattr(estimator, "fit") and hasattr(estimator, "predict"):
            self.model, self.fun = copy.deepcopy(estimator), None
        elif callable(estimator):
            self.model, self.fun = None, estimator
        else:
            raise LmmError(
                f"the fixed part must have fit() and predict() or be a callable f(X, target), "
                f"not {type(estimator).__name__}"
            )

    def fit_predict(self, X, target) -> np.ndarray:
        if self.fun is None:
            self.model.fit(X, target)
            out = self.model.predict(X)
        else:
            out = self.fun(X, target)
            if hasattr(out, "predict"):
                self.model, out = out, out.predict(X)
        out = np.asarray(out, dtype=float).ravel()
        if out.shape != (len(target),):
            raise LmmError(f"the fixed part returned {out.size} predictions for {len(target)} rows")
        if not np.all(np.isfinite(out)):
            raise LmmError("the fixed part returned NaN or infinite predictions")
        return out

    def predict(self, X) -> np.ndarray:
        if self.model is None:
            raise LmmError(
                "the fixed part is a callable that returned predictions only; to predict new "
                "data let it return a fitted object with predict()"
            )
        return np.asarray(self.model.predict(X), dtype=float).ravel()
