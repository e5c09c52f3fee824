r"""Weighted Gram matrices ``A blockdiag(V_j) A'`` of one sparse A for many weights V.

Eliminating the first random-effects term (one level at a time) leaves, in the tail block,
the Schur complement ``A_tt - A_t1 blockdiag(V_j) A_t1'`` with new symmetric k x k weights
V_j for every theta (k the first term's size; for k = 1 a vector v).  With the columns of A in
groups of k (one group per level j) the product is a sum over the levels,

    A blockdiag(V) A' = sum_j A_j V_j A_j'          (A_j: level j's k columns, c_j entries)

and each level goes the cheapest of three routes, chosen once from its number of entries:

- *dense* (a level with many entries): its columns as a dense block B_j and one BLAS rank
  update ``B_j V_j B_j'`` of an m x m buffer.  It costs m^2 k / 2 multiply-adds whatever the
  sparsity, at BLAS speed; with V_j = U diag(lambda) U' (k = 1: v_j itself) it is
  ``syrk(B_j U_+ sqrt(lambda_+)) - syrk(B_j U_- sqrt(-lambda_-))``, exact for any symmetric V_j.
- *stored pairs* (the others, up to ``PAIR_BUDGET`` pairs in all): the products
  ``A[r, (j, c)] A[s, (j, d)]`` of the pairs of level j's entries with r >= s, enumerated once,
  form a sparse matrix S with one row per position (r, s) of the lower triangle and one column
  per weight (j, c, d); the level's part of every product is then the matrix-vector product
  ``S vec(V)``: c_j (c_j + 1) / 2 stored multiply-adds, no symbolic work per theta.
- *formed* (what is left beyond the budget): the sparse product ``A_F blockdiag(V_F) A_F'``
  formed each time by scipy, a few levels at a time.

Each level goes the cheapest way by a cost in BLAS multiply-adds (:func:`choose_routes`).  The
transposed products give, per level, ``A_j' C A_j`` for a symmetric C (what the gradient
needs): ``S' x`` at the positions, ``B_j' (C B_j)`` by BLAS, and sparse-dense products.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

from ..errors import MemoryLimitError
from .memory import PAIR_BYTES, format_bytes, require_memory

PAIR_BUDGET = 60_000_000  # stored pairs (12 bytes each in S); beyond it, levels are formed each time
# the routes' costs in BLAS multiply-adds (syrk on one core; measured on ml-1m-shaped data): a
# stored pair per evaluation and, once, to build (a fit takes some 40 evaluations); a formed pair
DENSE_SPEEDUP = 30.0  # a stored pair's multiply-add per evaluation
STORED_BUILD = 35.0  # a stored pair's share of the build (1,400 over 40 evaluations)
FORMED_PAIR = 600.0  # a pair of a product formed by scipy (its symbolic pass, its sort)
DENSE_CHUNK_BYTES = 256 * 2**20  # the dense levels' columns are made dense this much at a time
FORMED_CHUNK = 256  # levels per sparse product of the formed route's level products


def pair_count(counts) -> int:
    """The pairs (r >= s) of entries of levels with ``counts`` entries each."""
    counts = np.asarray(counts, dtype=np.int64)
    return int((counts * (counts + 1) // 2).sum())


def choose_routes(counts, m: int, k: int, budget: int):
    """Per level: 0 stored pairs, 1 dense, 2 formed, for levels with ``counts`` entries of an
    m-row A in groups of k, at most ``budget`` pairs stored.  A level costs m (m + 1) k / 2
    dense, its pairs times DENSE_SPEEDUP + STORED_BUILD stored, times FORMED_PAIR formed; each
    goes the cheapest way, the lightest stored first while the budget lasts."""
    counts = np.asarray(counts, dtype=np.int64)
    pairs = counts * (counts + 1) // 2
    dense_cost = m * (m + 1) / 2 * k
    route = np.where(pairs * (DENSE_SPEEDUP + STORED_BUILD) >= dense_cost, 1, 0)
    route[counts == 0] = 0  # nothing to do: no pairs
    light = np.flatnonzero(route == 0)
    light = light[np.argsort(pairs[light], kind="stable")]
    over = light[np.cumsum(pairs[light]) > budget]  # beyond the budget: formed, or dense if cheaper
    route[over] = np.where(pairs[over] * FORMED_PAIR >= dense_cost, 1, 2)
    return route


def _syrk_into(G: np.ndarray, alpha: float, B: np.ndarray) -> None:
    """G += alpha B B' on the lower triangle of the Fortran-ordered G, in place (BLAS dsyrk)."""
    out = blas.dsyrk(alpha, np.asfortranarray(B), beta=1.0, c=G, lower=1, overwrite_c=1)
    if out is not G:  # not updated in place (G not Fortran-contiguous): copy back
        G[...] = out


class WeightedGram:
    """``A blockdiag(V) A'`` at the fixed lower-triangle positions ``(rows, cols)`` of A A'."""

    def __init__(self, A, group: int = 1, budget: int | None = None, refreshable: bool = False):
        """``budget`` the stored pairs at most (None: the module's ``PAIR_BUDGET``, read now).
        ``refreshable``: keep A's pattern for :meth:`refresh` (a caller whose A keeps its
        pattern and changes its values, as PIRLS's reweighted Z does)."""
        budget = PAIR_BUDGET if budget is None else int(budget)
        self._refresh_with = (sp.csr_matrix(A, dtype=float, copy=True), group, budget) if refreshable else None
        A = sp.csc_matrix(A, dtype=float)
        A.sort_indices()
        m, ncols = A.shape
        k = self.k = int(group)
        self.nlevels = ncols // k
        self.m = m
        ptr = A.indptr[::k].astype(np.int64)  # where each level's entries start
        counts = np.diff(ptr)
        self.route = choose_routes(counts, m, k, budget)
        self.n_pairs = pair_count(counts[self.route == 0])
        # the stored pairs while they are built, the position maps and the dense buffer
        need = self.n_pairs * PAIR_BYTES + 13 * m * m
        require_memory(need, f"the Schur complement's {self.n_pairs:,} stored pairs of a {m:,}-row block")
        self._pair_double: np.ndarray | None = None  # k > 1: the pairs' factor 2 (both orders of a row's two columns)
        try:
            self._build(A, ptr, counts)
        except MemoryError:
            raise MemoryLimitError(
                f"this model cannot fit in memory: the Schur complement's {self.n_pairs:,} stored pairs "
                f"of a {m:,}-row block need about {format_bytes(need)}"
            ) from None
        if refreshable:
            self._make_value_maps()

    def _build(self, A, ptr, counts):
        """The routes' data: the dense and formed levels' columns, the stored pairs' S, the positions."""
        m, k, n = self.m, self.k, self.nlevels
        taken = np.zeros(m * m, dtype=bool)  # the positions hi * m + lo (hi >= lo) with a product
        # the dense levels: their columns, and the rows they touch
        self.dense_levels = np.flatnonzero(self.route == 1)
        self.A_dense: sp.csc_matrix | None = A[:, self._columns(self.dense_levels)] if self.dense_levels.size else None
        if self.A_dense is not None:
            touched = np.flatnonzero(np.diff(self.A_dense.tocsr().indptr))
            hi, lo = np.meshgrid(touched, touched, indexing="ij")
            keep = hi >= lo
            taken[(hi[keep] * m + lo[keep])] = True
            del hi, lo, keep
        # the formed levels: their columns, the pattern of their product once
        self.formed_levels = np.flatnonzero(self.route == 2)
        self.A_formed: sp.csc_matrix | None = (
            A[:, self._columns(self.formed_levels)].tocsc() if self.formed_levels.size else None
        )
        if self.A_formed is not None:
            # the pattern of A_F blockdiag(V) A_F' for any V: from |A_F| (scipy's product drops
            # exact zeros, and a sum that cancels in A A' need not cancel with weights) and full
            # k x k blocks (V_j joins a level's columns c and d)
            absA = abs(self.A_formed)
            if k > 1:
                absA = absA @ sp.block_diag([np.ones((k, k))] * self.formed_levels.size, format="csc")
            P = sp.tril(absA @ abs(self.A_formed).T).tocoo()
            taken[P.row.astype(np.int64) * m + P.col] = True
            del P
        # the stored pairs
        stored = np.flatnonzero((self.route == 0) & (counts > 0))
        flat, values, weights, self.order, sources = self._enumerate_pairs(A, ptr, counts, stored)
        self._pair_sources = sources  # (first, second) entries of A.data per pair, for refresh
        taken[flat] = True
        positions = np.flatnonzero(taken)
        del taken
        self.rows, self.cols = positions // m, positions % m
        self._weight = np.where(self.rows == self.cols, 1.0, 2.0)
        self._dense_at = None  # positions in a Fortran-ordered m x m buffer (made on first use)
        self._dense_cache: np.ndarray | None = None  # the dense levels' columns, if one block holds them
        self._dense_at_cache: np.ndarray | None = None  # A_dense's entries' places in it (for refresh)
        self._buffer: np.ndarray | None = None  # the m x m work array of the dense and formed levels
        if flat.size:
            index = np.empty(m * m, dtype=np.int32 if positions.size < 2**31 else np.int64)
            index[positions] = np.arange(positions.size)
            row_of_pair = index[flat]
            del index, flat
        else:
            row_of_pair = np.zeros(0, dtype=np.int64)
        if k == 1:  # built by columns (levels in self.order) as the pairs come, stored by rows:
            c = counts[self.order]  # the product S v then writes its output in order
            indptr = np.concatenate([[0], np.cumsum(c * (c + 1) // 2)])
            parts: tuple = (row_of_pair, indptr, (positions.size, self.order.size))
        else:
            parts = (
                row_of_pair,
                np.concatenate(weights) if weights else np.zeros(0, dtype=np.int64),
                (positions.size, n * k * k),
            )
        self.S = self._assemble_S(np.concatenate(values) if values else np.zeros(0), parts)
        self._S_parts = parts if self._refresh_with is not None else None  # for the refresh maps, then dropped

    def _assemble_S(self, data: np.ndarray, parts: tuple) -> sp.csr_matrix:
        """S from its values in the pairs' order: CSC by level (k = 1) or COO (k > 1), as CSR."""
        row_of_pair, cols, shape = parts
        if self.k == 1:
            return sp.csc_matrix((data, row_of_pair, cols), shape=shape).tocsr()
        return sp.csr_matrix((data, (row_of_pair, cols)), shape=shape)

    def _make_value_maps(self) -> None:
        """Where each stored value of every route comes from in the data of the matrix given at
        construction (CSR order), so that :meth:`refresh` writes values only: the pattern, the
        routes and the positions stay those of construction (they depend on A's pattern, and
        the formed route's on |A|'s)."""
        pattern = self._refresh_with[0] if self._refresh_with is not None else None
        assert pattern is not None
        numbered = pattern.copy()
        numbered.data = np.arange(numbered.nnz, dtype=float)
        csc = sp.csc_matrix(numbered)
        csc.sort_indices()  # as __init__ sorts A: csc.data[e] is the source of A.data[e]
        source = csc.data.astype(np.int64)
        first, second = self._pair_sources
        # S's data order: the pairs' order through the same construction as _build's
        order_S = self._pair_order(first.size)
        if order_S is None:  # duplicate (position, weight) pairs were summed: no values-only refresh
            self._value_maps: dict | None = None
            return
        self._value_maps = {
            "first": source[first[order_S]],
            "second": source[second[order_S]],
            "double": None if self._pair_double is None else self._pair_double[order_S],
            "dense": source[self._column_entries(csc, self.dense_levels)] if self.A_dense is not None else None,
            "formed": source[self._column_entries(csc, self.formed_levels)] if self.A_formed is not None else None,
        }
        # what only the maps needed
        self._pair_sources = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._S_parts = None
        self._pair_double = None

    def _pair_order(self, npairs: int):
        """The permutation from the pairs' order to S's data order (None if S summed pairs)."""
        if self.S.nnz != npairs:
            return None
        return self._S_numbered().data.astype(np.int64)

    def _S_numbered(self) -> sp.csr_matrix:
        """S's pattern with each entry numbered by its pair, built as :meth:`_build` builds S."""
        assert self._S_parts is not None  # kept by _build for refreshable grams
        numbers = np.arange(self.S.nnz, dtype=float)
        return self._assemble_S(numbers, self._S_parts)

    def _column_entries(self, csc: sp.csc_matrix, levels) -> np.ndarray:
        """The entries of these levels' columns in csc's data, column by column."""
        cols = self._columns(levels)
        start, stop = csc.indptr[cols], csc.indptr[cols + 1]
        lengths = stop - start
        offsets = np.repeat(start - np.cumsum(lengths) + lengths, lengths)
        return offsets + np.arange(lengths.sum())

    def refresh(self, data) -> "WeightedGram":
        """The same for a matrix of A's pattern with new stored values ``data`` (in the order of
        the matrix given at construction, as CSR).  Values only: the stored pairs' products are
        two gathers and a multiply, the dense and formed levels' columns a gather; the routes
        and positions are those of construction (so the numbers are those of a Gram built
        afresh from the new values)."""
        if self._refresh_with is None:
            raise ValueError("this WeightedGram was built without refreshable=True")
        pattern, group, budget = self._refresh_with
        data = np.asarray(data, dtype=float)
        maps = self._value_maps
        if maps is None:  # rebuild (a pattern whose pairs S sums)
            pattern.data[...] = data
            self.__init__(pattern, group, budget, refreshable=True)  # type: ignore[misc]
            return self
        pattern.data[...] = data
        values = np.multiply(data[maps["first"]], data[maps["second"]], out=self.S.data)
        if maps["double"] is not None:
            values *= maps["double"]
        if self.A_dense is not None:
            self.A_dense.data[...] = data[maps["dense"]]
            cache = self._dense_cache
            if cache is not None and cache.flags.f_contiguous:  # its zeros stay: the entries in place
                cache.reshape(-1, order="F")[self._dense_cache_at()] = self.A_dense.data
            else:
                self._dense_cache = None
        if self.A_formed is not None:
            self.A_formed.data[...] = data[maps["formed"]]
        return self

    def __getstate__(self) -> dict:
        # the work buffer and the dense columns are remade on first use (a pickled copy, for a
        # bootstrap worker, stays small)
        state = dict(self.__dict__)
        state["_buffer"], state["_dense_cache"] = None, None
        return state

    def _columns(self, levels) -> np.ndarray:
        """The columns of A of these levels, level by level."""
        return (np.asarray(levels)[:, None] * self.k + np.arange(self.k)).ravel()

    def _enumerate_pairs(self, A, ptr, counts, stored):
        """The stored levels' pairs: flat positions hi * m + lo, products, weight indices (k > 1)
        and the levels in the order their pairs come (by count)."""
        m, k = self.m, self.k
        rows, data = A.indices.astype(np.int64), A.data
        sub = np.repeat(np.arange(A.shape[1]) % k, np.diff(A.indptr))  # column within the level
        if k > 1:  # a level's entries by row
            level = np.repeat(np.arange(self.nlevels), counts)
            order = np.lexsort((rows, level))
            rows, data, sub = rows[order], data[order], sub[order]
        # the levels with c entries share one pattern of c (c + 1) / 2 pairs (i <= j in the
        # level, rows sorted: row_i <= row_j): enumerate them a count at a time
        flats: list[np.ndarray] = []
        values: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        level_order: list[np.ndarray] = []
        firsts: list[np.ndarray] = []
        seconds: list[np.ndarray] = []
        doubles: list[np.ndarray] = []
        source = order if k > 1 else None  # the entries' places in A.data
        keep = self._refresh_with is not None  # the pairs' entries, for the refresh maps
        for c in np.unique(counts[stored]):
            lev = stored[counts[stored] == c]
            i, j = np.triu_indices(int(c))
            first = ptr[lev][:, None] + i  # (levels, pairs)
            second = ptr[lev][:, None] + j
            lo, hi = rows[first], rows[second]
            flats.append((hi * m + lo).ravel())
            value = data[first] * data[second]
            if k > 1:  # two columns of one row: both orders of the pair, V symmetric
                double = np.where((lo == hi) & (i != j), 2.0, 1.0)
                value *= double
                weights.append((lev[:, None] * k * k + sub[second] * k + sub[first]).ravel())
                if keep:
                    doubles.append(double.ravel())
            if keep:
                firsts.append((first if source is None else source[first]).ravel())
                seconds.append((second if source is None else source[second]).ravel())
            values.append(value.ravel())
            level_order.append(lev)
        flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        sources = (np.concatenate(firsts) if firsts else empty, np.concatenate(seconds) if seconds else empty)
        self._pair_double = (
            np.concatenate(doubles) if doubles else (None if k == 1 else np.zeros(0))
        )  # k > 1: the pairs' factor 2 (both orders of a row's two columns)
        levels = np.concatenate(level_order) if level_order else np.zeros(0, dtype=np.int64)
        return flat, values, weights, levels, sources

    @property
    def dense_positions(self) -> np.ndarray:
        """The positions as flat indices into a Fortran-ordered m x m array."""
        if self._dense_at is None:
            self._dense_at = self.rows + self.cols * self.m
        return self._dense_at

    def _weights(self, V) -> np.ndarray:
        """The stored levels' weights as S's columns take them."""
        return V[self.order] if self.k == 1 else V.reshape(-1)

    def _dense_blocks(self, levels0: int, levels1: int) -> np.ndarray:
        """The dense levels ``levels0:levels1`` (of ``dense_levels``) as a Fortran-ordered block
        (kept when all of them fit in one block)."""
        k = self.k
        if self._dense_cache is not None:
            return self._dense_cache[:, levels0 * k : levels1 * k]
        assert self.A_dense is not None  # only called for the dense levels
        B = self.A_dense[:, levels0 * k : levels1 * k].toarray(order="F")
        if levels0 == 0 and levels1 == self.dense_levels.size:
            self._dense_cache = B
        return B

    def _dense_cache_at(self) -> np.ndarray:
        """Where A_dense's entries lie in the Fortran-ordered dense cache (made once)."""
        if self._dense_at_cache is None:
            A = self.A_dense
            assert A is not None
            cols = np.repeat(np.arange(A.shape[1], dtype=np.int64), np.diff(A.indptr))
            self._dense_at_cache = cols * self.m + A.indices
        return self._dense_at_cache

    def _dense_chunk(self) -> int:
        """Dense levels per block: DENSE_CHUNK_BYTES of columns."""
        return max(1, DENSE_CHUNK_BYTES // (8 * self.m * self.k))

    def _add_dense(self, V, G: np.ndarray) -> None:
        """G += sum over the dense levels of B_j V_j B_j' (lower triangle, G Fortran-ordered)."""
        k, lev = self.k, self.dense_levels
        step = self._dense_chunk()
        for j0 in range(0, lev.size, step):
            j1 = min(lev.size, j0 + step)
            B = self._dense_blocks(j0, j1)
            if k == 1:
                v = V[lev[j0:j1]]
                parts = [(1.0, np.sqrt(np.maximum(v, 0.0))), (-1.0, np.sqrt(np.maximum(-v, 0.0)))]
                for sign, root in parts:
                    if np.any(root > 0):
                        use = root > 0
                        Bs = B[:, use] * root[use]
                        _syrk_into(G, sign, Bs)
            else:  # V_j = U diag(lam) U': B_j U sqrt(|lam|), positive and negative parts apart
                lam, U = np.linalg.eigh(V[lev[j0:j1]])
                Bu = np.einsum("rlc,lcd->rld", B.reshape(self.m, j1 - j0, k), U)
                for sign in (1.0, -1.0):
                    root = np.sqrt(np.maximum(sign * lam, 0.0))  # (levels, k)
                    use = (root > 0).ravel()
                    if np.any(use):
                        Bs = np.asfortranarray((Bu * root[None]).reshape(self.m, -1)[:, use])
                        _syrk_into(G, sign, Bs)

    def _add_formed(self, V, G: np.ndarray) -> None:
        """G += the formed levels' A_F blockdiag(V_F) A_F' (lower triangle): one sparse product
        (at most m x m, as G)."""
        k, lev = self.k, self.formed_levels
        AF = self.A_formed
        assert AF is not None  # only called for the formed levels
        if k == 1:  # the columns scaled by v: A_F diag(v_F)
            scaled = sp.csc_matrix((AF.data * np.repeat(V[lev], np.diff(AF.indptr)), AF.indices, AF.indptr), AF.shape)
        else:
            scaled = AF @ sp.block_diag(list(V[lev]), format="csc")
        P = sp.tril(scaled @ AF.T).tocoo()
        G[P.row, P.col] += P.data  # distinct positions: no duplicates after the product

    def values(self, V) -> np.ndarray:
        """``(A blockdiag(V) A')[rows, cols]`` for V of shape (levels,) (k = 1) or
        (levels, k, k), symmetric blocks."""
        V = np.asarray(V, dtype=float)
        out = self.S @ self._weights(V) if self.S.shape[1] else np.zeros(self.rows.size)
        if self.A_dense is None and self.A_formed is None:
            return out
        if self._buffer is None:
            self._buffer = np.zeros((self.m, self.m), order="F")
        G = self._buffer
        G.fill(0.0)
        if self.A_dense is not None:
            self._add_dense(V, G)
        if self.A_formed is not None:
            self._add_formed(V, G)
        out += G.reshape(-1, order="F")[self.dense_positions]
        return out

    def level_products(self, C) -> np.ndarray:
        """``A_j' C A_j`` for each level j (A_j its k columns) and a symmetric C (C-ordered,
        at least m x m: its leading m x m block's lower triangle is read): shape (levels,) for
        k = 1, else (levels, k, k)."""
        k, m = self.k, self.m
        out = np.zeros((self.nlevels, k, k))
        if self.S.shape[1]:
            C_at = C.reshape(-1)[self.rows * C.shape[1] + self.cols] * self._weight
            u = self.S.T @ C_at
            if k == 1:
                out[self.order, 0, 0] = u
            else:
                U = u.reshape(-1, k, k)  # each unordered pair once: split it between (c, d), (d, c)
                out += 0.5 * (U + np.swapaxes(U, 1, 2))
        if self.A_dense is not None or self.A_formed is not None:
            # the lower triangle of the C-ordered lead is the upper one of its Fortran transpose
            lead = np.asfortranarray(C[:m, :m].T)
            if self.A_dense is not None:
                lev, step = self.dense_levels, self._dense_chunk()
                for j0 in range(0, lev.size, step):
                    j1 = min(lev.size, j0 + step)
                    B = self._dense_blocks(j0, j1)
                    CB = blas.dsymm(1.0, lead, B, side=0, lower=0)  # C B_j by BLAS, C's triangle read
                    out[lev[j0:j1]] = np.einsum("rlc,rld->lcd", B.reshape(m, -1, k), CB.reshape(m, -1, k))
            if self.A_formed is not None:
                full = np.tril(C[:m, :m]) + np.tril(C[:m, :m], -1).T  # symmetric
                lev = self.formed_levels
                for j0 in range(0, lev.size, FORMED_CHUNK):
                    j1 = min(lev.size, j0 + FORMED_CHUNK)
                    AJ = self.A_formed[:, j0 * k : j1 * k]
                    W = np.asarray(AJ.T @ full)  # (levels k) x m: A_J' C
                    for c in range(k):
                        for d in range(k):
                            out[lev[j0:j1], c, d] = np.asarray(AJ[:, d::k].T.multiply(W[c::k]).sum(axis=1)).ravel()
        return out[:, 0, 0] if k == 1 else out
