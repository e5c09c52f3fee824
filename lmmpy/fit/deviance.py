r"""The profiled criteria of a linear mixed model as functions of theta (Bates et al. 2015).

For theta, with L the blocked Cholesky factor of [Z Lambda X y]'[Z Lambda X y] + diag(I, 0, 0)
(see :mod:`lmmpy.linalg.blocked`), r^2 = pwrss, n observations and p fixed effects:

    ML deviance     d(theta)   = log|L_theta|^2 + n (1 + log(2 pi r^2 / n))
    REML criterion  d_R(theta) = log|L_theta|^2 + log|R_X|^2 + (n - p)(1 + log(2 pi r^2 / (n - p)))

exactly as lme4 reports them (``deviance()`` for ML fits, ``REMLcrit()`` for REML fits).
With prior weights w (residual variance sigma^2 / w_i) the rows of Z, X and y are scaled by
sqrt(w) and both criteria gain -sum(log w), the log-determinant of the weights; an offset is
subtracted from y.
``objective(update(set_theta(model, theta)))`` is the whole fitting loop.
"""

from __future__ import annotations

from typing import Any

import copy
import weakref

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from ..errors import LmmError
from ..formula.design import Design
from .cross_products import CrossProducts, empty_csr
from .dense_criterion import DENSE_MAX_ORDER, DenseCriterion, dense_order
from ..linalg.blocked import BlockedCholesky, UniformBlockDiagonal, mirror_lower  # noqa: F401 (re-exported)
from ..formula.theta_layout import theta_templates  # noqa: F401 (re-exported)
from .gradient import criterion_gradient_parts
from .start import optimizer_start
from ..linalg.gram import WeightedGram

LOG2PI = np.log(2.0 * np.pi)
ROW_BLOCK = 128  # rows of a dense tail block transformed at a time (temporaries stay small)
FACTOR_CACHE_SIZE = 4  # owned factors kept by LmmModel.factor (an optimum and a few neighbours)


def ml_deviance(L: BlockedCholesky, n: int, log_w_sum: float = 0.0) -> float:
    """The profiled ML deviance log|L_theta|^2 + n (1 + log(2 pi r^2 / n)) - sum(log w)."""
    return L.logdet_L2 + n * (1.0 + LOG2PI + np.log(L.pwrss / n)) - log_w_sum


def ml_deviance_at(L: BlockedCholesky, n: int, sigma2: float, log_w_sum: float = 0.0) -> float:
    """The ML deviance at a given residual variance, not profiled over it (lme4's devfun2):
    D(theta, sigma^2) = log|L_theta|^2 + pwrss / sigma^2 + n log(2 pi sigma^2) - sum(log w),
    which :func:`ml_deviance` is at its minimum over sigma^2 (pwrss / n)."""
    return L.logdet_L2 + L.pwrss / sigma2 + n * (LOG2PI + np.log(sigma2)) - log_w_sum


def reml_criterion(L: BlockedCholesky, n: int, p: int, log_w_sum: float = 0.0) -> float:
    """The profiled REML criterion
    log|L_theta|^2 + log|R_X|^2 + (n - p)(1 + log(2 pi r^2 / (n - p))) - sum(log w)."""
    nmp = n - p
    return L.logdet_L2 + L.logdet_RX2 + nmp * (1.0 + LOG2PI + np.log(L.pwrss / nmp)) - log_w_sum


class LmmModel:
    """Everything about a model that does not change with theta, and its evaluation at theta.

    Built from the cross-products (:class:`lmmpy.fit.cross_products.CrossProducts`) and the
    terms' structure alone; the rows are reached only through ``set_response``.  Two ways to
    evaluate: the working point (``model(theta)``, ``objective``, ``gradient``: the optimizer's
    hot loop, one reused work buffer, ``L`` valid until the next evaluation) and
    :meth:`factor` (an owned factor, cached by theta, that no later evaluation changes)."""

    def __init__(self, design: Design, REML: bool = True, cross_products: CrossProducts | None = None):
        """The model of ``design``; its cross-products computed from the rows unless given."""
        cp = CrossProducts.from_design(design) if cross_products is None else cross_products
        w = design.weights
        self._setup(
            cp,
            [(t.nlevels, t.k) for t in design.reterms],
            design.theta_lower(),
            design.n,
            design.p,
            float(np.log(w).sum()) if w is not None else 0.0,
            REML,
        )
        self.design: Design | None = design  # None: built from cross-products alone

    @classmethod
    def from_cross_products(
        cls, cp: CrossProducts, sizes, theta_lower, n: int, p: int, log_w_sum: float = 0.0, REML: bool = True
    ) -> "LmmModel":
        """The model from its cross-products and the terms' structure alone: ``sizes`` the
        terms' (levels, k) in order, lme4's theta lower bounds, n rows, p fixed effects and
        sum(log w) (no design: a model whose rows are elsewhere)."""
        model = cls.__new__(cls)
        model._setup(cp, sizes, np.asarray(theta_lower, dtype=float), n, p, log_w_sum, REML)
        model.design = None
        return model

    def _setup(self, cp: CrossProducts, sizes, lower, n, p, log_w_sum, REML):
        self.REML = bool(REML)
        self.cross_products = cp
        self.sizes = [tuple(s) for s in sizes]
        self.ks = [k for _, k in self.sizes]
        self.n, self.p = n, p
        self.log_w_sum = log_w_sum
        l1, k1 = self.sizes[0]
        # the blocks of [Z X y]'W[Z X y] (CrossProducts): shared arrays, updated in place by set_response
        self.A11, self.At1_z, self.At1_xy = cp.A11, cp.At1_z, cp.At1_xy
        self.Att_zz, self.Att = cp.Att_zz, cp.Att
        self.q_tail = cp.q_tail
        self.tail_scalar = all(k == 1 for k in self.ks[1:])
        self._at1_rows = np.repeat(np.arange(self.At1_z.shape[0]), np.diff(self.At1_z.indptr))
        self._empty_lt1 = empty_csr(0, l1 * k1)
        self._gram: WeightedGram | None = None
        # (T_1's bytes, the gram's values) of the last update
        self._schur_values: tuple[bytes | None, np.ndarray | None] = (None, None)
        self._gram_flat: dict[int, np.ndarray] = {}  # leading dimension -> flat positions of the gram's entries
        self._work: dict[str, np.ndarray] = {}
        self.lower = lower
        self.theta = self.theta_start()
        self.L: BlockedCholesky | None = None  # the working factor: at _L_theta, valid until the next update
        self._L_theta: np.ndarray | None = None
        # theta's bytes -> an owned factor (LmmModel.factor), oldest first
        self._factors: dict[bytes, BlockedCholesky] = {}
        self._gradient_cache: tuple | None = None  # (working factor, REML) -> (d log-determinants, d pwrss)
        # weak references to this model and its with_reml twins, which share the cross-products
        # (a strong self-reference would keep every model alive until the cyclic collector runs)
        self._variants = [weakref.ref(self)]
        self._dense: DenseCriterion | bool | None = None  # the DenseCriterion of a small model, built on first use
        self.n_evals = 0

    def with_reml(self, REML: bool) -> "LmmModel":
        """This model with the other criterion (REML or ML): the same cross-products (shared,
        so set_response on either is seen by both), its own working factor and caches."""
        REML = bool(REML)
        for m in self._live_variants():
            if m.REML == REML:
                return m
        if self.q_tail:
            self.gram  # built once, shared
        twin = copy.copy(self)
        twin.REML = REML
        twin._work, twin._factors, twin._gradient_cache, twin._dense = {}, {}, None, None
        twin.L, twin._L_theta = None, None
        twin._variants = self._variants  # one list for all twins (copy.copy went through __setstate__)
        self._variants.append(weakref.ref(twin))
        return twin

    def __getstate__(self) -> dict:
        # weak references do not pickle (bootstrap workers get the model): a copy is on its own
        state = dict(self.__dict__)
        del state["_variants"]
        state["_dense"] = None  # rebuilt on first use (it refers to the model weakly)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._variants = [weakref.ref(self)]

    def _live_variants(self) -> list:
        return [m for m in (ref() for ref in self._variants) if m is not None]

    def _invalidate(self):
        """Forget every factor of this model and its twins (the cross-products changed)."""
        for m in self._live_variants():
            m.L, m._L_theta, m._gradient_cache = None, None, None
            m._factors = {}
            if m._dense:  # the new response's pivot is checked again
                m._dense.refresh_response()
                if not m._dense.well_conditioned(m.theta_start()):
                    m._dense = False

    def theta_start(self) -> np.ndarray:
        """lme4's start: 1 on the templates' diagonals, 0 below."""
        return np.where(self.lower == 0.0, 1.0, 0.0)

    def optimizer_start(self) -> np.ndarray:
        """Where the optimizer starts by default (:mod:`lmmpy.fit.start`: Swamy's moment
        estimate for one term where it applies, else lme4's start in rms units)."""
        return optimizer_start(self)

    def set_response(self, y) -> "LmmModel":
        """Replace the response (one value per row, before weights and offset): only the
        products with y are recomputed (:meth:`CrossProducts.set_response`), the symbolic
        structure and Z'Z, X'X stay; this model and its twins forget their factors."""
        self.cross_products.set_response(y)
        self._invalidate()
        return self

    @property
    def dense(self) -> DenseCriterion | None:
        """The criterion through one dense Cholesky (:mod:`lmmpy.fit.dense_criterion`) for a
        small model (order q + p + 1 <= DENSE_MAX_ORDER), which the optimizer and the checks
        evaluate instead of the blocked factor; None for larger models."""
        if self._dense is None:
            self._dense = False  # not small, or X ill-conditioned (DenseCriterion.well_conditioned)
            if dense_order(self.sizes, self.p) <= DENSE_MAX_ORDER:
                dense = DenseCriterion(self.cross_products, self.sizes, self.p, self.n, self.log_w_sum, self.REML)
                if dense.well_conditioned(self.theta_start()):
                    dense.counter = weakref.proxy(self)  # no cycle: the model is freed when dropped
                    self._dense = dense
        return self._dense if isinstance(self._dense, DenseCriterion) else None

    def quick_criterion(self) -> Any:
        """theta -> the criterion, by the cheapest route: :attr:`dense` for a small model, else
        the working point (``model(theta)``)."""
        return self.dense or self

    # -- theta -------------------------------------------------------------------------
    def set_theta(self, theta) -> "LmmModel":
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        if theta.shape != self.theta.shape:
            raise LmmError(f"theta has length {theta.size}, the model needs {self.theta.size}")
        self.theta = theta.copy()
        return self

    def tail_lambda(self, templates):
        """Lambda_t on the tail: a vector (all tail terms scalar) or None (some vector-valued)."""
        if not self.tail_scalar:
            return None
        lam = np.ones(self.q_tail + self.p + 1)
        lam[: self.q_tail] = np.repeat([T[0, 0] for T in templates[1:]], [l for l, _ in self.sizes[1:]])
        return lam

    def lambda_t_rows(self, M, templates, transpose: bool = False, inplace: bool = False):
        """Lambda_t' M (``transpose``: Lambda_t M) for a dense M whose rows are the tail's
        (vector-valued terms blockwise); ``inplace`` overwrites M (which may be a view)."""
        if not inplace:
            M = M.copy()
        start = 0
        for (l, k), T in zip(self.sizes[1:], templates[1:]):
            if k == 1:
                M[start : start + l] *= T[0, 0]
            else:  # level by level: T' (k x k) times the level's k rows, a few levels at a time
                Tm = T if transpose else T.T
                for j0 in range(0, l, ROW_BLOCK):
                    rows = slice(start + j0 * k, start + min(l, j0 + ROW_BLOCK) * k)
                    M[rows] = np.matmul(Tm, M[rows].reshape(-1, k, M.shape[1])).reshape(-1, M.shape[1])
            start += l * k
        return M

    def lambda_t_cols(self, M, templates, transpose: bool = False):
        """M Lambda_t (``transpose``: M Lambda_t'), in place."""
        start = 0
        for (l, k), T in zip(self.sizes[1:], templates[1:]):
            seg = slice(start, start + l * k)
            if k == 1:
                M[:, seg] *= T[0, 0]
            else:  # each row's k entries of a level times T: a matrix product, rows in blocks
                Tm = T.T if transpose else T
                for r0 in range(0, M.shape[0], ROW_BLOCK):
                    block = M[r0 : r0 + ROW_BLOCK, seg]
                    block[...] = (block.reshape(-1, k) @ Tm).reshape(block.shape)
            start += l * k
        return M

    def lambda_t_sandwich(self, M, templates, transpose: bool = False):
        """Lambda_t' M Lambda_t (``transpose``: Lambda_t M Lambda_t'), in place."""
        self.lambda_t_rows(M, templates, transpose, inplace=True)
        return self.lambda_t_cols(M, templates, transpose)

    def work_buffer(self, name, shape, order="C") -> np.ndarray:
        """A work array kept between evaluations (fresh large arrays cost page faults)."""
        buf = self._work.get(name)
        if buf is None or buf.shape != shape:
            buf = self._work[name] = np.empty(shape, order=order)
        return buf

    def _lambda_z_sparse(self, templates, transpose: bool = False) -> sp.csr_matrix:
        """Lambda_t (``transpose``: Lambda_t') restricted to the tail's random effects, sparse."""
        blocks = [
            sp.kron(sp.identity(l, format="csr"), sp.csr_matrix(T.T if transpose else T))
            for (l, _), T in zip(self.sizes[1:], templates[1:])
        ]
        return sp.block_diag(blocks, format="csr")

    # -- the factor ----------------------------------------------------------------------
    @property
    def gram(self) -> WeightedGram:
        """A_t1 blockdiag(V) A_t1' for any V, on its fixed pattern (built on first use)."""
        if self._gram is None:
            self._gram = WeightedGram(self.At1_z, group=self.ks[0])
        return self._gram

    def _gram_positions(self, ld: int) -> np.ndarray:
        """The gram's positions as flat indices into a C-ordered array of leading dimension ld."""
        if ld not in self._gram_flat:
            self._gram_flat[ld] = self.gram.rows * ld + self.gram.cols
        return self._gram_flat[ld]

    def _xy_schur(self, V, rows: int):
        """The Schur complement's rows of [X y] (the first ``rows`` of them): the parts
        A_xt1 blockdiag(V) A_t1' against the random effects (rows x q) and against [X y]
        (rows x rows)."""
        A = self.At1_xy[:rows]
        if V.ndim == 1:
            AV = A * V
        else:
            l, k, _ = V.shape
            AV = np.einsum("plc,lcd->pld", A.reshape(rows, l, k), V).reshape(rows, l * k)
        return np.asarray(self.At1_z @ AV.T).T, AV @ A.T

    def tail_schur(self, V, full: bool = True, out=None, values=None, scale=None) -> np.ndarray:
        """The tail [Z_t X y]'s Schur complement before Lambda_t:
        A~ = A_tt - A_t1 blockdiag(V) A_t1' with V_j = T_1 Omega_11j^{-1} T_1' (for a scalar
        first term the vector (t_1 / L_11)^2); with ``scale`` s, diag(s) A~ diag(s).  Only the
        lower triangle is updated unless ``full``; ``values`` are the gram's at V if known."""
        q = self.q_tail
        if out is None:
            out = np.empty_like(self.Att)
        if scale is None:
            np.copyto(out, self.Att)
        else:
            np.multiply(self.Att, scale[:, None], out=out)
            out *= scale[None, :]
        vals = self.gram.values(V) if values is None else values
        if scale is not None:
            vals = vals * scale[self.gram.rows] * scale[self.gram.cols]
        out.reshape(-1)[self._gram_positions(out.shape[1])] -= vals
        xz, xx = self._xy_schur(V, self.p + 1)
        if scale is not None:
            xz *= scale[None, :q]
        out[q:, :q] -= xz
        out[q:, q:] -= xx
        return mirror_lower(out) if full else out

    def weighted_tail_schur(self, V, W, values, out) -> np.ndarray:
        """W o A~ (elementwise) on the lower triangle of the lead's m x m block, for a lower
        triangular W (m x m): A~ as in :meth:`tail_schur`, never formed."""
        m, q = W.shape[0], self.q_tail
        np.multiply(W, self.Att[:m, :m], out=out)
        lower = self._gram_positions(m)
        flat = out.reshape(-1)
        flat[lower] -= W.reshape(-1)[lower] * values
        if m > q:
            xz, xx = self._xy_schur(V, m - q)
            out[q:, :q] -= W[q:, :q] * xz
            out[q:, q:] -= W[q:, q:] * xx
        return out

    def update(self) -> "LmmModel":
        """Recompute the working factor ``L`` for the current theta (the optimizer's hot loop:
        its tail lives in a work buffer that the next evaluation overwrites, so ``L`` is valid
        only until then; :meth:`factor` hands out factors that stay valid)."""
        if self.L is not None and self._L_theta is not None and np.array_equal(self._L_theta, self.theta):
            return self  # L is that of this theta already
        N = self.Att.shape[0]
        self.L = self._factorize(self.theta, self.work_buffer("Ott", (N, N)) if self.q_tail else None)
        self._L_theta = self.theta.copy()
        self.n_evals += 1
        return self

    def factor(self, theta) -> BlockedCholesky:
        """The blocked Cholesky factor at theta, owning its memory: later evaluations at other
        thetas never change it, and taking it changes nothing another caller sees (the working
        point ``theta``/``L`` and ``n_evals`` stay).  The last few are cached by theta."""
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        if theta.shape != self.theta.shape:
            raise ValueError(f"theta has length {theta.size}, the model needs {self.theta.size}")
        key = theta.tobytes()
        L = self._factors.pop(key, None)
        if L is None:
            if self.L is not None and self._L_theta is not None and np.array_equal(self._L_theta, theta):
                L = self.L.owned()  # the working factor is at theta: copy its tail out of the buffer
            else:
                N = self.Att.shape[0]
                L = self._factorize(theta, np.empty((N, N)) if self.q_tail else None)
        self._factors[key] = L
        while len(self._factors) > FACTOR_CACHE_SIZE:
            self._factors.pop(next(iter(self._factors)))
        return L

    def _factorize(self, theta, out) -> BlockedCholesky:
        """The blocked Cholesky factor at theta, its tail computed in ``out`` (N x N, or None
        for a model with one term).

        The tail block is Lambda_t' (A_tt - A_t1 blockdiag(V) A_t1') Lambda_t + diag(I, 0)
        with V_j = T_1 Omega_11j^{-1} T_1' (for a scalar first term r^2, r = t_1 / L_11), the
        Schur complement taken on A_t1's fixed pattern of pairs (:class:`WeightedGram`), and
        Lambda_t a diagonal scaling for scalar tail terms, blockwise otherwise."""
        templates = theta_templates(theta, self.ks)
        T1 = templates[0]
        k1 = T1.shape[0]
        A = self.At1_z
        # the first term: L_11, R = Lambda_1 L_11^{-T} per level (a vector for k1 = 1), V = R R'
        if k1 == 1:  # Omega_11 = t^2 A11 + 1, L11 = sqrt, R = t / L11
            L11 = UniformBlockDiagonal(np.sqrt(T1[0, 0] ** 2 * self.A11 + 1.0))
            R = T1[0, 0] / L11.blocks.ravel()
            V = R * R
            Lt1_xy = self.At1_xy * R
            A_R = sp.csr_matrix((A.data * R[A.indices], A.indices, A.indptr), shape=A.shape) if self.q_tail else None
        else:
            O11 = np.einsum("ji,ljk,km->lim", T1, self.A11, T1)
            O11 += np.eye(k1)
            L11 = UniformBlockDiagonal(O11).cholesky()
            R = UniformBlockDiagonal(np.einsum("ij,lkj->lik", T1, L11.inverse().blocks))
            V = np.einsum("lij,lkj->lik", R.blocks, R.blocks)  # T1 Omega_11j^{-1} T1'
            Lt1_xy = R.right_multiply(self.At1_xy)
            A_R = (A @ R.to_sparse()).tocsr() if self.q_tail else None
        if self.q_tail:
            lam = self.tail_lambda(templates)
            self._schur_values = (T1.tobytes(), self.gram.values(V))  # the gradient needs them again
            Ott = self.tail_schur(V, full=lam is None, out=out, values=self._schur_values[1], scale=lam)
            if lam is not None:  # L_t1 = Lambda_t' A_t1 R
                assert A_R is not None  # built above when there is a tail
                rows = self._at1_rows if k1 == 1 else np.repeat(np.arange(A_R.shape[0]), np.diff(A_R.indptr))
                A_R.data *= lam[rows]
                Lt1_z = A_R
            else:
                self.lambda_t_sandwich(Ott, templates)
                Lt1_z = self._lambda_z_sparse(templates, transpose=True) @ A_R
            Ott[np.arange(self.q_tail), np.arange(self.q_tail)] += 1.0
        else:
            Lt1_z = self._empty_lt1
            Ott = self.Att - Lt1_xy @ Lt1_xy.T
        # the lower triangle of the C-ordered Ott is the upper one of its (Fortran-ordered)
        # transpose: LAPACK factors it in place, U'U = Ott, and U' = L is C-ordered again
        U, info = lapack.dpotrf(Ott.T, lower=0, clean=1, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"the tail block is not positive definite (dpotrf info {info})")
        return BlockedCholesky(L11, Lt1_z, Lt1_xy, U.T, self.q_tail, self.p)

    # -- criteria -------------------------------------------------------------------------
    def criterion_of(self, L: BlockedCholesky, REML=None) -> float:
        """The model's criterion (REML criterion or ML deviance; ``REML`` overrides) of the factor L."""
        if self.REML if REML is None else REML:
            return reml_criterion(L, self.n, self.p, self.log_w_sum)
        return ml_deviance(L, self.n, self.log_w_sum)

    def criterion(self, theta, REML=None) -> float:
        """The criterion at theta from :meth:`factor` (the working point stays); inf where the
        factor breaks down."""
        try:
            return float(self.criterion_of(self.factor(theta), REML))
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError):
            return np.inf

    def deviance_ml(self) -> float:
        """The ML deviance at the working point."""
        assert self.L is not None, "update() first"
        return ml_deviance(self.L, self.n, self.log_w_sum)

    def reml_criterion(self) -> float:
        """The REML criterion at the working point."""
        assert self.L is not None, "update() first"
        return reml_criterion(self.L, self.n, self.p, self.log_w_sum)

    def objective(self, theta=None) -> float:
        """The criterion at theta (moving the working point there), or at the working point."""
        if theta is not None:
            self.set_theta(theta).update()
        assert self.L is not None, "update() first"
        return self.criterion_of(self.L)

    def __call__(self, theta) -> float:
        """The criterion at theta (what the optimizer minimises); inf where the factor breaks down."""
        try:
            return self.objective(theta)
        except (np.linalg.LinAlgError, sla.LinAlgError, FloatingPointError):
            return np.inf

    # -- the gradient ---------------------------------------------------------------------------
    def gradient(self, theta=None, parts: bool = False):
        """The criterion's analytic gradient (:mod:`lmmpy.fit.gradient`) at theta (moving the
        working point there) or at the working point; with ``parts``, its two pieces (d
        log-determinants, d pwrss).  Cached for the working factor."""
        if theta is not None:
            self.set_theta(theta).update()
        L = self.L
        assert L is not None, "update() first"
        key = (L, self.REML)
        cached = self._gradient_cache
        if cached is not None and cached[0] == key:  # the same factor: the same gradient
            g_logdet, g_pwrss = (x.copy() for x in cached[1])
        else:
            g_logdet, g_pwrss = criterion_gradient_parts(self, L, self.theta)
            self._gradient_cache = (key, (g_logdet.copy(), g_pwrss.copy()))
        scale = (self.n - self.p if self.REML else self.n) / L.pwrss
        return (g_logdet, g_pwrss) if parts else g_logdet + scale * g_pwrss

    def schur_values(self, T1, V) -> np.ndarray:
        """The gram's values at V = T_1 Omega_11^{-1} T_1' (those of the last factorisation if
        it was at this T_1)."""
        key, values = self._schur_values
        return values if key == T1.tobytes() and values is not None else self.gram.values(V)
