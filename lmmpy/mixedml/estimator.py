r"""``MixedML``: random effects around any regression model, y = f(X) + Z nu + eps.

The mixedML framework (the paper "Mixed effects in machine learning -- a flexible mixedML
framework to add random effects to supervised machine learning regression") alternates

    1. train f on the target y - Z b            (b = 0 at the start)
    2. update the random part on e = y - f(X)   (one EM step, ML or REML; or, out of the
                                                 box, a full lmer fit of e)

until the iterations settle (:mod:`lmmpy.mixedml.monitor`: the generalized log-likelihood,
the random part's parameters, the fitted values).  With a linear f the fixed point is the
linear mixed model's: f is then the GLS fit, and the EM step's fixed point the ML / REML
estimates (see :mod:`lmmpy.mixedml.random_part`).

Predictions are f(X) + Z b for known groups ("within") and f(X) for new ones ("out").
The estimator follows scikit-learn's conventions (constructor stores its arguments, learned
attributes end in ``_``, ``fit`` returns ``self``); scikit-learn itself is optional.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import DataError, LmmError
from ..formula.design import build_design
from ..formula.frames import as_pandas
from ..fit.em import squarem_point
from ..results.model import ConvergenceWarning, ranef_frames
from ..results.varcorr import varcorr_frame
from .fixed_part import FixedPart
from ..inference.predict import group_labels, known_level_effects, new_data_matrix
from .monitor import Changes, Progress, Snapshot
from .random_part import RandomPart, RandomState

if TYPE_CHECKING:  # imported when summary() is called
    from .summary import MixedMLSummary

try:  # scikit-learn's base classes when it is installed (get_params, clone, tags, score)
    from sklearn.base import BaseEstimator, RegressorMixin, is_classifier
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:  # pragma: no cover - the same protocol, minimal
    import inspect

    class BaseEstimator:  # type: ignore[no-redef]  # scikit-learn's when installed (Any to mypy)
        def get_params(self, deep: bool = True) -> dict[str, Any]:
            names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
            return {nm: getattr(self, nm) for nm in names}

        def set_params(self, **params: Any) -> BaseEstimator:
            for k, v in params.items():
                setattr(self, k, v)
            return self

    class RegressorMixin:  # type: ignore[no-redef]  # scikit-learn's when installed (Any to mypy)
        predict: Callable[..., np.ndarray]  # the subclass's

        def score(self, X: Any, y: Any) -> float:
            y = np.asarray(y, float)
            return 1.0 - np.sum((y - self.predict(X)) ** 2) / np.sum((y - y.mean()) ** 2)

    check_is_fitted = validate_data = None

    def is_classifier(estimator: Any) -> bool:
        return getattr(estimator, "_estimator_type", None) == "classifier"


METHODS = ("ml", "reml", "oob")
POLISH_EVERY = 5  # steps between moves of the random part to its optimum (see _fit_loop)
OOB_BACKENDS = ("lmer", "statsmodels")


class MixedML(RegressorMixin, BaseEstimator):
    """Random effects around any regression model (mixedML).

    Parameters
    ----------
    estimator : the fixed part f: an object with ``fit(X, y)`` and ``predict(X)`` (e.g. a
        scikit-learn regressor; deep-copied, then refitted every iteration, so a pre-trained
        model with ``warm_start=True`` is fine-tuned), or a callable ``f(X, target)``
        returning predictions at X or a fitted object with ``predict``.  Default: least
        squares with an intercept (the linear mixed model).
    method : "reml" (default), "ml" -- EM updates of the random part (the paper's Table 1)
        -- or "oob": each iteration fits the random part by lmer (REML) on the residuals.
    max_iter : the most iterations (each trains f once).
    tol, tol_change : an iteration (or SQUAREM cycle) is small when the GLL's relative change
        is at most ``tol``, or the random part's parameters (theta, log sigma^2) move by at
        most ``tol_change`` and the fitted values by at most ``tol_change`` residual SDs (see
        :mod:`lmmpy.mixedml.monitor`).  EM can take small steps far from its limit (it crawls
        with a flexible f or a variance near zero), so after a small step the random part is
        moved to its ML / REML optimum for the current residuals -- EM's limit for them -- and
        the fit has converged when that moves it by at most ``tol_change`` too.  The default
        1e-4 lies above the noise of an f trained to a tolerance of its own (an SVR's fitted
        values move by ~5e-5 residual SDs from one refit to the next) and far below the
        estimates' standard errors.  Otherwise a ``ConvergenceWarning`` says how far the
        last iteration still moved.
    accelerate : SQUAREM extrapolation of the EM iterations (ML / REML): the same fixed
        point in a few times fewer fits of f; False runs the paper's plain iterations.
    oob_backend : "lmer" (lmmpy) or "statsmodels" (MixedLM, one grouping factor), for
        ``method="oob"``.
    verbose : False / 0 prints nothing; True / 1 a line for each of the first ten steps, then
        for every tenth (the step, the iterations so far, the GLL, the three changes above and
        the elapsed time) and how it ended; 2 or more a line for every step.

    Attributes
    ----------
    estimator_ : the fitted fixed part.
    varcorr_ : lme4's VarCorr table of the random part.
    ranef_ : the conditional modes, per grouping factor.
    sigma_ : the residual standard deviation.
    theta_ : the random part's relative covariance factor, lme4's theta.
    gll_trace_ : the GLL at each iteration.
    n_iter_ : the iterations taken.
    converged_ : whether the fit converged.
    fitted_ : f(X) + Z b at the training rows.
    fitted_fixed_ : f(X) at the training rows.
    """

    def __init__(
        self,
        estimator: Any = None,
        method: str = "reml",
        max_iter: int = 100,
        tol: float = 1e-8,
        tol_change: float = 1e-4,
        accelerate: bool = True,
        oob_backend: str = "lmer",
        verbose: bool | int = 0,
    ) -> None:
        self.estimator = estimator
        self.method = method
        self.max_iter = max_iter
        self.tol = tol
        self.tol_change = tol_change
        self.accelerate = accelerate
        self.oob_backend = oob_backend
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None, Z: Any = None) -> MixedML:
        """Fit f and the random effects: a random intercept for each grouping factor in
        ``groups`` (a column; several columns: crossed or nested factors), with random slopes
        on the columns of ``Z``.  Without ``groups`` only f is fitted."""
        self._check_settings()
        X = as_pandas(X, "X")  # a polars DataFrame or pyarrow Table: pandas from here on
        features, y = self._validate(X, y, reset=True)
        self.formula_: str | None = None
        if groups is None:
            warnings.warn(
                "MixedML.fit() without groups fits no random effects, only the fixed part f; "
                "pass groups= (and Z=) for random effects",
                UserWarning,
                stacklevel=2,
            )
            return self._fit_loop(features, y, None)
        X_reml = np.column_stack([np.ones(len(y)), _numeric_columns(features)])
        random = RandomPart.from_arrays(groups, Z, X_reml, len(y))
        return self._fit_loop(features, y, random)

    @classmethod
    def from_formula(
        cls, formula: str, data: pd.DataFrame, estimator: Any = None, method: str = "reml", **kwargs: Any
    ) -> MixedML:
        """Fit from an lme4 formula: the fixed-effects columns (without the intercept) are f's
        features, the random-effects terms the random part; e.g.
        ``MixedML.from_formula("langPOST ~ IQ_verb + ses + (IQ_verb | schoolnr)", data, SVR())``."""
        model = cls(estimator=estimator, method=method, **kwargs)
        model._check_settings()
        design = build_design(formula, data)
        if not design.reterms:
            raise LmmError(f"the formula {formula!r} has no random-effects terms")
        keep = [i for i, nm in enumerate(design.xnames) if nm != "(Intercept)"]
        if not keep:
            raise LmmError(f"the formula {formula!r} gives the fixed part no features")
        features = pd.DataFrame(design.X[:, keep], columns=[design.xnames[i] for i in keep], index=design.row_index)
        model._validate(features, design.y, reset=True)
        model.formula_, model.design_ = design.formula.text, design
        random = RandomPart(design, design.X, design.xnames)
        return model._fit_loop(features, design.y, random)

    def _fit_loop(self, X: Any, y: np.ndarray, random: RandomPart | None) -> MixedML:
        fixed = FixedPart(self.estimator)
        t0 = time.perf_counter()
        if random is None:
            f = fixed.fit_predict(X, y)
            self.fit_seconds_ = time.perf_counter() - t0
            self._store(fixed, None, None, f, y - f, [], True, 1)
            return self
        reml = self.method == "reml"
        step = {
            "ml": lambda e, s: random.em_step(e, s, reml=False),
            "reml": lambda e, s: random.em_step(e, s, reml=True),
            "oob": random.lmer_step if self.oob_backend == "lmer" else random.statsmodels_step,
        }[self.method]

        def iteration(state: RandomState) -> tuple[RandomState, np.ndarray, np.ndarray, float]:
            """One mixedML iteration: f on y - Z b, then the random part on e = y - f."""
            f = fixed.fit_predict(X, y - state.zb)
            e = y - f
            new = step(e, state)
            return new, f, e, random.gll(e, new)

        f = fixed.fit_predict(X, y)
        state = random.start(y - f)
        progress = Progress(self.verbose)
        progress.start(self._describe(random, len(y)))
        trace, converged, it, step_no = [], False, 0, 0
        last, changes, moved = None, None, False  # moved: changes are a move to the optimum
        while it < self.max_iter:
            new, f, e, gll = iteration(state)
            it += 1
            if self.accelerate and self.method != "oob" and it + 2 <= self.max_iter:
                new, f, e, gll, used = self._squarem(iteration, random, state, (new, f, e, gll))
                it += used
            state = new
            step_no += 1
            now = Snapshot(gll, state.theta, state.sigma2, f + state.zb)
            changes = Changes.between(last, now) if last is not None else None
            small = changes is not None and changes.settled(self.tol, self.tol_change)
            moved = False
            if self.method != "oob" and (small or step_no % POLISH_EVERY == 0):
                # EM can crawl (a flexible f, a variance near zero): small steps far from
                # its limit.  The random part's ML / REML optimum for this e is EM's limit
                # for it: moving there now and then keeps EM from crawling, and a small
                # step has converged only if the move is small too.
                state = random.polish(e, state, reml)
                gll = random.gll(e, state)
                polished = Snapshot(gll, state.theta, state.sigma2, f + state.zb)
                jump = Changes.between(now, polished)
                converged = small and jump.params <= self.tol_change and jump.fitted <= self.tol_change
                if small and not converged:
                    changes, moved = jump, True
                now = polished
                update = "optimum"
            else:
                converged = small
                update = "lmer" if self.method == "oob" else "EM"
            trace.append(gll)
            progress.step(
                step_no, it, gll, changes, time.perf_counter() - t0, update, force=converged or it >= self.max_iter
            )
            if converged:
                break
            last = now
        if self.method != "oob" and not converged:
            # the optimizer finishes the random part for the last e (EM crawls along ridges
            # and cannot leave a zero variance's null space)
            state = random.polish(e, state, reml)
        self.fit_seconds_ = time.perf_counter() - t0
        self._store(fixed, random, state, f, e - state.zb, trace, converged, it)
        if converged:
            progress.end(f"converged after {it} iterations in {self.fit_seconds_:.1f} s")
        else:
            message = self._not_converged_message(it, changes, moved)
            progress.end(message)
            warnings.warn(message, ConvergenceWarning, stacklevel=3)
        return self

    def _describe(self, random: RandomPart, n: int) -> str:
        """The first line of the progress output: what is fitted, and how."""
        fixed = (
            "least squares"
            if self.estimator is None
            else (
                type(self.estimator).__name__
                if hasattr(self.estimator, "fit")
                else getattr(self.estimator, "__name__", "a callable")
            )
        )
        terms = " + ".join(f"({t.lhs} | {t.group})" for t in random.terms)
        how = {"ml": "ML-EM", "reml": "REML-EM", "oob": "out of the box"}[self.method]
        if self.accelerate and self.method != "oob":
            how += " with SQUAREM"
        return (
            f"mixedML, {how}: f = {fixed}, random part {terms}, {n} rows; max_iter={self.max_iter}, "
            f"tol={self.tol:g}, tol_change={self.tol_change:g}"
        )

    def _not_converged_message(self, n_iter: int, changes: Changes | None, moved: bool) -> str:
        """Says what did not settle and how far the last step (or the move of the random part
        to its optimum after it) still moved."""
        head = f"mixedML did not converge in {n_iter} iterations (max_iter={self.max_iter}, {self.fit_seconds_:.1f} s)"
        if changes is None:
            return (
                head + ": it stopped after one step (an iteration or SQUAREM cycle), with nothing to "
                "compare it with; raise max_iter"
            )
        what = "the move of the random part to its optimum after the last step" if moved else "the last step"
        return (
            f"{head}: {what} changed the GLL by {changes.gll:.3g} relative (tol={self.tol:g}), "
            f"the random part's parameters (theta, log sigma^2) by {changes.params:.3g} and the "
            f"fitted values by {changes.fitted:.3g} residual SDs (tol_change={self.tol_change:g}); "
            f"raise max_iter or tol_change, or use verbose=1 to watch the iterations"
        )

    @staticmethod
    def _squarem(iteration: Callable[[RandomState], tuple], random: RandomPart, s0: RandomState, first: tuple) -> tuple:
        """SQUAREM (:func:`lmmpy.fit.em.squarem_point`) on the iterations' map of (theta,
        log sigma^2): from s0, s1 = F(s0), s2 = F(s1), extrapolate and take one iteration from
        there, kept when its GLL is not above the plain steps'.  Z b is not extrapolated (f's
        target stays a genuine y - Z b, safe for a non-smooth f).  EM alone crawls along ridges
        and towards zero variances; this needs a few times fewer fits of f."""

        def vec(s: RandomState) -> np.ndarray:
            return np.concatenate([s.theta, [np.log(s.sigma2)]])

        s1 = first[0]
        second = iteration(s1)
        xc = squarem_point(vec(s0), vec(s1), vec(second[0]))
        k = s0.theta.size
        theta = np.maximum(xc[:k], random.model.lower)
        sigma2 = float(np.exp(xc[k]))
        cand = RandomState(theta, sigma2, None, second[0].zb)
        try:
            third = iteration(cand)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return (*second, 1)
        return (*third, 2) if np.isfinite(third[3]) and third[3] <= second[3] else (*second, 1)

    def _store(
        self,
        fixed: FixedPart,
        random: RandomPart | None,
        state: RandomState | None,
        f: np.ndarray,
        resid: np.ndarray,
        trace: list[float],
        converged: bool,
        n_iter: int,
    ) -> None:
        self.fixed_part_, self.random_part_, self.state_ = fixed, random, state
        self.estimator_ = fixed.model if fixed.model is not None else fixed.fun
        self.fitted_fixed_ = f
        self.residuals_ = resid
        self.fitted_ = f + (state.zb if state is not None else 0.0)
        self.gll_trace_ = np.asarray(trace, dtype=float)
        self.n_iter_, self.converged_ = n_iter, converged
        if state is None:
            self.sigma_ = float(np.sqrt(np.mean(resid**2)))
            self.theta_ = np.zeros(0)
            self.varcorr_ = varcorr_frame([], [], [], self.sigma_)
            self.ranef_ = {}
            return
        self.sigma_ = float(np.sqrt(state.sigma2))
        self.theta_ = state.theta.copy()
        assert random is not None and state.b_terms is not None  # a fitted state comes with its random part
        terms = random.terms
        self.varcorr_ = varcorr_frame(
            [t.group for t in terms], [t.cnames for t in terms], random.covariances(state), self.sigma_
        )
        self.ranef_ = ranef_frames(terms, state.b_terms)

    # -- prediction ------------------------------------------------------------------------
    def predict(self, X: Any, groups: Any = None, Z: Any = None) -> np.ndarray:
        """f(X) + Z b where the group is known ("within"), f(X) elsewhere and without
        ``groups`` ("out").  A model fitted from a formula predicts a DataFrame of the
        formula's variables (groups and slopes read from it; ``groups=False``: f(X) alone)."""
        self._check_fitted()
        X = as_pandas(X, "X")
        if (
            self.formula_ is not None
            and isinstance(X, pd.DataFrame)
            and Z is None
            and not isinstance(groups, (pd.Series, np.ndarray, list, pd.DataFrame))
        ):
            return self._predict_frame(X, within=groups is not False)
        features, _ = self._validate(X, None, reset=False, fitting=False)
        out = self.fixed_part_.predict(features)
        if groups is not None and groups is not False and self.state_ is not None and self.random_part_ is not None:
            out = out + self.random_part_.zb_new(self.state_.b_terms, groups, Z, len(out))
        return out

    def _predict_frame(self, newdata: pd.DataFrame, within: bool = True) -> np.ndarray:
        design = self.design_
        X = new_data_matrix(design.fixed_spec, newdata, "fixed-effects matrix")
        if design.x_keep is not None:
            X = X[:, design.x_keep]
        keep = [i for i, nm in enumerate(design.xnames) if nm != "(Intercept)"]
        features = pd.DataFrame(X[:, keep], columns=[design.xnames[i] for i in keep], index=newdata.index)
        out = self.fixed_part_.predict(features)
        if within:
            assert self.random_part_ is not None and self.state_ is not None and self.state_.b_terms is not None
            for t, b in zip(self.random_part_.terms, self.state_.b_terms):
                missing = [g for g in t.group_vars if g not in newdata.columns]
                if missing:
                    raise DataError(f"the new data lack the grouping column(s) {', '.join(missing)}")
                Xr = new_data_matrix(t.spec, newdata, f"random-effects term ({t.lhs} | {t.group})")
                out = out + known_level_effects(t, b, group_labels(newdata, t.group_vars), Xr)[0]
        return out

    # -- reporting ---------------------------------------------------------------------------
    def summary(self) -> MixedMLSummary:
        """What was fitted: the method, iterations, random effects as lme4 prints them, MSEs."""
        self._check_fitted()
        from .summary import MixedMLSummary

        return MixedMLSummary.from_model(self)

    def __str__(self) -> str:
        return str(self.summary()) if hasattr(self, "n_iter_") else repr(self)

    # -- checks ------------------------------------------------------------------------------
    def _check_settings(self) -> None:
        if self.method not in METHODS:
            raise LmmError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.oob_backend not in OOB_BACKENDS:
            raise LmmError(f"oob_backend must be 'lmer' or 'statsmodels', not {self.oob_backend!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise LmmError(f"max_iter must be a positive integer, not {self.max_iter!r}")
        if _is_classifier(self.estimator):
            # scikit-learn would only say "Unknown label type: continuous" at the first fit
            raise LmmError(
                f"the fixed part must be a regressor; {type(self.estimator).__name__} is a classifier "
                "(mixedML models a continuous response; use a regressor)"
            )
        for name in ("tol", "tol_change"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not value >= 0
            ):
                raise LmmError(f"{name} must be a number >= 0, not {value!r}")
        if not (isinstance(self.verbose, (bool, int, np.integer)) and self.verbose >= 0):
            raise LmmError(f"verbose must be True, False or an integer level >= 0, not {self.verbose!r}")

    def _check_fitted(self) -> None:
        if check_is_fitted is not None:
            check_is_fitted(self, "n_iter_")
        elif not hasattr(self, "n_iter_"):
            raise LmmError("this MixedML is not fitted yet; call fit() first")

    def _validate(self, X: Any, y: Any, reset: bool, fitting: bool = True) -> tuple[Any, np.ndarray | None]:
        """X as given (a DataFrame stays one, for estimators that use column names), checked
        as scikit-learn checks it; y (when fitting) numeric and finite."""
        if validate_data is not None and (not isinstance(X, pd.DataFrame) or _all_numeric(X)):
            if fitting:
                Xc, y = validate_data(self, X, y, reset=reset, y_numeric=True)
            else:
                Xc = validate_data(self, X, reset=reset)
            X = X if isinstance(X, pd.DataFrame) else Xc
        elif reset:
            self.n_features_in_ = np.shape(X)[1] if np.ndim(X) == 2 else None
        if fitting:
            if y is None:
                raise DataError("MixedML requires y to be passed, but the target y is None")
            y = np.asarray(y)
            if y.dtype == object:
                try:
                    y = y.astype(float)
                except (TypeError, ValueError):
                    raise DataError("the response must be numeric") from None
            if y.dtype.kind not in "fiub":
                raise DataError(f"the response must be numeric, not {y.dtype}")
            y = y.astype(float).ravel()
            if not np.all(np.isfinite(y)):
                raise DataError("the response has NaN or infinite values")
        return X, y


def _is_classifier(estimator: Any) -> bool:
    """A scikit-learn classifier (by its tags); False for anything without them (a callable,
    a hand-written model), which may well be a regressor."""
    if estimator is None or isinstance(estimator, type) or not hasattr(estimator, "fit"):
        return False
    try:
        return bool(is_classifier(estimator))
    except (AttributeError, TypeError):
        return getattr(estimator, "_estimator_type", None) == "classifier"


def _all_numeric(frame: pd.DataFrame) -> bool:
    return all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes)


def _numeric_columns(X: Any) -> np.ndarray:
    """The numeric columns of X, for the REML projection's design."""
    if isinstance(X, pd.DataFrame):
        X = X.select_dtypes("number")
    arr = np.asarray(X, dtype=float) if np.asarray(X).dtype.kind in "fiub" else np.zeros((len(X), 0))
    return arr.reshape(len(arr), -1)
