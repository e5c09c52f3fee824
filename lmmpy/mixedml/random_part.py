r"""The random part of a mixedML model, y = f(X) + Z nu + eps, for a given fixed part.

With the fixed part's predictions f and e = y - f, the random part is the linear mixed model
e = X gamma + Z nu + eps, X the fixed-effects design (intercept and features).  One EM update
of its variance components (the mixedML paper's Table 1), from Sigma (per term) and sigma^2
with V = Z Sigma Z' + sigma^2 I, is

    b      = Sigma Z' P e                      the conditional modes (BLUPs)
    r      = e - X gamma - Z b                 gamma = (X'V^{-1}X)^{-1} X'V^{-1} e
    Sigma <- (1 / J) sum_j [ b_j b_j' + Sigma - Sigma Z_j' P Z_j Sigma ]       per term
    sigma^2 <- ( r'r + sigma^2 tr(I - sigma^2 P) ) / N

with P = V^{-1} (ML) or the REML projection P = V^{-1} - V^{-1} X (X'V^{-1}X)^{-1} X'V^{-1}.
The paper writes b = Sigma Z' V^{-1} e; the two agree at a linear f's fixed point (there
X'V^{-1}e = 0), but with a flexible f that leaves part of e linear in X (level-2 features
above all, which random intercepts can mimic) V^{-1} e hands that part to b, f loses it from
its next target, b takes more: the fit drifts (seen with SVR on the Snijders & Bosker data).
Profiling gamma keeps what is X's for f.  With a linear f the fixed point is lmer's fit.

Nothing n_j x n_j is formed.  In lme4's parametrisation Sigma = sigma^2 Lambda Lambda' (theta
holds Lambda's templates T = chol(Sigma) / sigma), the factor L of [Z Lambda X e] gives all of
it: b = Lambda u with [u, gamma] the penalised least-squares solution,
Sigma - Sigma Z'P Z Sigma = sigma^2 Lambda C Lambda' with C = (L_Z L_Z')^{-1} (ML) or
C = (L_Z L_Z')^{-1} + G'G (REML, see :meth:`BlockedCholesky.fixed_correction`), and
tr(I - sigma^2 P) = q - tr C (ML) or q + p - tr C (REML).

Convergence is monitored by the generalized log-likelihood (the paper's eq. 7, as a
-2 log-likelihood: smaller is better), with r = e - Z b,

    GLL = r'r / sigma^2 + N log sigma^2 + sum_terms sum_levels [ b_j' Sigma^{-1} b_j + log|Sigma| ]

(with Sigma's pseudo-inverse and pseudo-determinant when a variance is on its boundary).
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pandas as pd

from ..errors import DataError, LmmError
from ..fit.deviance import LmmModel, theta_templates
from ..fit.driver import optimize_lmer
from ..fit.em import em_m_step, psd_lower_factor, theta_from_templates
from ..fit.gradient import cond_cov_sums
from ..formula.design import build_design, drop_aliased_columns, level_labels
from ..inference.predict import known_level_effects


@dataclasses.dataclass
class RandomState:
    """The random part's parameters after an update."""

    theta: np.ndarray
    sigma2: float
    b_terms: list | None  # per term, (levels x k) conditional modes (None at the start)
    zb: np.ndarray  # Z b, one value per row
    criterion: float = np.nan  # the ML / REML criterion for e (EM: at the previous theta)


class RandomPart:
    """The random-effects terms of a mixedML model and the updates of their parameters."""

    z_columns: list  # the names of Z's data columns (set by the constructor from frames)

    def __init__(self, design, X_reml: np.ndarray, reml_names=None):
        with warnings.catch_warnings():  # an internal design: aliased features are simply left out
            warnings.simplefilter("ignore")
            X_reml, names, _, _ = drop_aliased_columns(
                np.asarray(X_reml, float), [str(nm) for nm in (reml_names or range(X_reml.shape[1]))]
            )
        self.design = dataclasses.replace(
            design, X=X_reml, xnames=names, weights=None, offset=None, weights_name=None, offset_name=None
        )
        self.model = LmmModel(self.design, REML=True)
        self.terms = self.design.reterms
        self.n, self.p = self.design.n, self.design.p

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, groups, Z, X_reml, n):
        """Random intercepts (and slopes on Z's columns) for each grouping factor in ``groups``
        (one column: one factor; several: crossed or nested factors, each with the slopes)."""
        gframe = _as_frame(groups, "group", n, "groups")
        zframe = _as_frame(Z, "z", n, "Z") if Z is not None else pd.DataFrame(index=range(n))
        for name, col in zframe.items():
            if not pd.api.types.is_numeric_dtype(col):
                raise DataError(f"Z column {name!r} is not numeric")
            if not np.all(np.isfinite(col.to_numpy(dtype=float))):
                raise DataError(f"Z column {name!r} has NaN or infinite values")
        for name, col in gframe.items():
            if col.isna().any():
                raise DataError(f"groups column {name!r} has missing values")
        # safe internal names for the formula; the user's names are put back on the terms
        frame = pd.DataFrame({"yy0": np.arange(n, dtype=float)})  # a placeholder response
        gnames = {f"gg{i}": str(c) for i, c in enumerate(gframe.columns)}
        znames = {f"zz{i}": str(c) for i, c in enumerate(zframe.columns)}
        for (safe, _), col in zip(gnames.items(), gframe.columns):
            frame[safe] = gframe[col].to_numpy()
        for (safe, _), col in zip(znames.items(), zframe.columns):
            frame[safe] = zframe[col].to_numpy(dtype=float)
        lhs = " + ".join(["1", *znames])
        formula = "yy0 ~ 1 + " + " + ".join(f"({lhs} | {g})" for g in gnames)
        try:
            design = build_design(formula, frame)
        except LmmError as err:  # name the user's columns, not the internal ones
            msg = str(err)
            for safe, user in {**gnames, **znames}.items():
                msg = re.sub(rf"\b{safe}\b", user, msg)
            raise DataError(msg) from None
        lhs_user = " + ".join(["1", *znames.values()])
        terms = [
            dataclasses.replace(
                t,
                group=gnames[t.group],
                group_vars=(gnames[t.group],),
                cnames=[znames.get(c, c) for c in t.cnames],
                lhs=lhs_user,
            )
            for t in design.reterms
        ]
        part = cls(dataclasses.replace(design, reterms=terms), X_reml)
        part.z_columns = list(zframe.columns)
        return part

    # -- the model for e ---------------------------------------------------------------------
    def start(self, e) -> RandomState:
        """lme4's start (Lambda = I: each variance equal to the residual's), sigma^2 = var(e)."""
        theta = self.design.theta_start()
        return RandomState(theta, float(np.var(e)) or 1.0, None, np.zeros(self.n))

    def templates(self, theta):
        return theta_templates(theta, self.model.ks)

    def covariances(self, state: RandomState) -> list:
        return [state.sigma2 * T @ T.T for T in self.templates(state.theta)]

    def zb(self, b_terms) -> np.ndarray:
        out = np.zeros(self.n)
        for t, b in zip(self.terms, b_terms):
            out += np.einsum("nk,nk->n", t.X, b[t.codes])
        return out

    def _b_terms(self, u, templates):
        out, pos = [], 0
        for t, T in zip(self.terms, templates):
            out.append(u[pos : pos + t.q].reshape(t.nlevels, t.k) @ T.T)
            pos += t.q
        return out

    def em_step(self, e, state: RandomState, reml: bool) -> RandomState:
        """One EM update (see the module docstring) of the random part of e = y - f."""
        model = self.model.set_response(e).with_reml(reml)
        L, sigma2 = model.factor(state.theta), state.sigma2
        criterion = float(model.criterion_of(L))  # at the previous theta: for monitoring convergence
        templates = self.templates(state.theta)
        u, _ = L.solve_u_beta()
        theta, sigma2_new, b_terms = em_m_step(model, L, u, templates, cond_cov_sums(model, L, state.theta), sigma2)
        return RandomState(theta, sigma2_new, b_terms, self.zb(b_terms), criterion)

    def polish(self, e, state: RandomState, reml: bool) -> RandomState:
        """The random part's parameters at the optimum of the ML criterion of e (no fixed
        effects: what the ML EM climbs) or the REML criterion of e given X, by the quasi-Newton
        optimizer from the state's theta.  EM crawls along ridges and cannot leave a zero
        variance's null space; the optimizer can.  The state is returned unchanged unless the
        criterion drops."""
        model = self.model.set_response(e).with_reml(reml)
        before = model(state.theta)
        opt = optimize_lmer(model, start=state.theta, control={"check_conv": False})
        if not opt.fmin < before - 1e-10 * abs(before):
            return state
        assert opt.theta is not None  # optimize_lmer always sets it
        L = model.factor(opt.theta)
        sigma2 = L.pwrss / (self.n - self.p if reml else self.n)
        u, _ = L.solve_u_beta()
        b_terms = self._b_terms(u, self.templates(opt.theta))
        return RandomState(opt.theta.copy(), float(sigma2), b_terms, self.zb(b_terms), float(opt.fmin))

    def lmer_step(self, e, state: RandomState) -> RandomState:
        """Out of the box: the REML fit of e ~ X + random terms (lmmpy's lmer chain, started
        from the previous theta); the random effects are its conditional modes."""
        model = self.model.set_response(e)
        opt = optimize_lmer(model, start=state.theta, control={"check_conv": False})
        assert opt.theta is not None  # optimize_lmer always sets it
        L = model.factor(opt.theta)
        u, _ = L.solve_u_beta()
        b_terms = self._b_terms(u, self.templates(opt.theta))
        return RandomState(opt.theta.copy(), L.pwrss / (self.n - self.p), b_terms, self.zb(b_terms), float(opt.fmin))

    def statsmodels_step(self, e, state: RandomState) -> RandomState:
        """Out of the box with statsmodels' MixedLM (REML), for comparison with the paper."""
        from statsmodels.regression.mixed_linear_model import MixedLM

        if len(self.terms) != 1:
            raise LmmError(
                "oob_backend='statsmodels' handles one grouping factor; MixedLM has no "
                "crossed random slopes (use oob_backend='lmer')"
            )
        t = self.terms[0]
        md = MixedLM(e, self.design.X, groups=t.codes, exog_re=t.X)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = md.fit(reml=True)
        b = np.vstack([np.asarray(res.random_effects[j], float) for j in range(t.nlevels)])
        sigma2 = float(res.scale)
        T = psd_lower_factor(np.asarray(res.cov_re, float) / sigma2)
        theta = np.maximum(theta_from_templates([T]), self.model.lower)
        return RandomState(theta, sigma2, [b], self.zb([b]))

    def gll(self, e, state: RandomState) -> float:
        """The generalized log-likelihood (module docstring) at the state."""
        r = e - state.zb
        total = r @ r / state.sigma2 + self.n * np.log(state.sigma2)
        for b, S in zip(state.b_terms or [], self.covariances(state)):
            vals, vecs = np.linalg.eigh(S)
            keep = vals > 1e-12 * max(vals.max(), 1e-300)
            proj = b @ vecs[:, keep]
            total += float((proj**2 / vals[keep]).sum() + b.shape[0] * np.log(vals[keep]).sum())
        return float(total)

    # -- new data ----------------------------------------------------------------------------
    def zb_new(self, b_terms, groups, Z, n) -> np.ndarray:
        """Z b for new rows given as arrays: known levels get their modes, unseen ones zero."""
        gframe = _as_frame(groups, "group", n, "groups")
        if gframe.shape[1] != len({t.group for t in self.terms}):
            raise DataError(
                f"groups has {gframe.shape[1]} column(s); the model was fitted with "
                f"{len({t.group for t in self.terms})}"
            )
        zcols = getattr(self, "z_columns", [])
        if zcols and Z is None:
            raise DataError(f"the random slopes need Z (columns {', '.join(map(str, zcols))})")
        zmat = _as_frame(Z, "z", n, "Z").to_numpy(dtype=float) if zcols else np.zeros((n, 0))
        if zmat.shape[1] != len(zcols):
            raise DataError(f"Z has {zmat.shape[1]} column(s); the model was fitted with {len(zcols)}")
        Xr = np.column_stack([np.ones(n), zmat])
        by_name = {str(c): gframe[c] for c in gframe.columns}
        out = np.zeros(n)
        for i, (t, b) in enumerate(zip(self.terms, b_terms)):
            col = by_name.get(t.group, gframe.iloc[:, i % gframe.shape[1]])
            out += known_level_effects(t, b, level_labels(col.to_numpy()), Xr)[0]
        return out


def _as_frame(values, stem, n, what) -> pd.DataFrame:
    """A Series, DataFrame, 1-D or 2-D array as a DataFrame with one column per variable."""
    if isinstance(values, pd.DataFrame):
        frame = values.reset_index(drop=True)
    elif isinstance(values, pd.Series):
        frame = values.reset_index(drop=True).to_frame(values.name if values.name is not None else stem)
    else:
        arr = np.asarray(values)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise DataError(f"{what} must be one column or a 2-D table, not a {arr.ndim}-D array")
        names = [stem] if arr.shape[1] == 1 else [f"{stem}{i + 1}" for i in range(arr.shape[1])]
        frame = pd.DataFrame({nm: arr[:, i] for i, nm in enumerate(names)})
    if len(frame) != n:
        raise DataError(f"{what} has {len(frame)} rows; X has {n}")
    return frame
