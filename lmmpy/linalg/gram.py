r"""Weighted Gram matrices ``A blockdiag(V_j) A'`` of one sparse A for many weights V.

Eliminating the first random-effects term (one level at a time) leaves, in the tail block,
the Schur complement ``A_tt - A_t1 blockdiag(V_j) A_t1'`` with new symmetric k x k weights
V_j for every theta (k the first term's size; for k = 1 a vector v).  With the columns of A in
groups of k (one group per level j),

    (A blockdiag(V) A')[r, s] = sum_j sum_{c, d} A[r, (j, c)] V_j[c, d] A[s, (j, d)]

is a sum over pairs of entries of one group.  Enumerated once, with r >= s, the products
``A[r, (j, c)] A[s, (j, d)]`` form a sparse matrix S with one row per position (r, s) of the
lower triangle and one column per weight (j, c, d), and every product is the matrix-vector
product ``S vec(V)``: no symbolic work, no sparse-sparse product and no sorting per theta.
The transposed product ``S' x`` gives, per level, ``A_j' C A_j`` for a symmetric C read at the
positions (what the gradient needs).  For k = 1 the pairs come out grouped by column, so S is
built directly in compressed-column form.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAIR_BUDGET = 60_000_000  # pairs (12 bytes each in S); beyond it, products go through scipy


class WeightedGram:
    """``A blockdiag(V) A'`` at the fixed lower-triangle positions ``(rows, cols)`` of A A'."""

    def __init__(self, A, group: int = 1, budget: int = PAIR_BUDGET, refreshable: bool = False):
        """``refreshable``: keep what :meth:`refresh` needs (the pairs' entries: 16 bytes a
        pair more), for a caller whose A keeps its pattern and changes its values."""
        self.refreshable = refreshable
        if refreshable:  # where each of the input's stored values lands in the sorted CSC copy
            tagged = sp.csr_matrix(A, dtype=float, copy=True) if A.format != "csc" else A.copy()
            tagged.data = np.arange(1, tagged.data.size + 1, dtype=float)
            tagged = tagged.tocsc()
            tagged.sort_indices()
            self._input_order = tagged.data.astype(np.int64) - 1
        A = sp.csc_matrix(A, dtype=float, copy=refreshable)
        A.sort_indices()
        m, ncols = A.shape
        k = self.k = int(group)
        n = self.nlevels = ncols // k
        self.A = A
        ptr = A.indptr[::k].astype(np.int64)  # where each level's entries start
        counts = np.diff(ptr)
        n_pairs = int((counts * (counts + 1) // 2).sum())
        if n_pairs > budget:  # too many pairs to store: the product is formed each time
            self.S = None
            AAt = sp.tril(A @ A.T).tocoo()
            self.rows, self.cols = AAt.row.astype(np.int64), AAt.col.astype(np.int64)
            return
        rows, data = A.indices.astype(np.int64), A.data
        sub = np.repeat(np.arange(ncols) % k, np.diff(A.indptr))  # column within the level
        order_entries = None
        if k > 1:  # a level's entries by row
            level = np.repeat(np.arange(n), counts)
            order = np.lexsort((rows, level))
            rows, data, sub = rows[order], data[order], sub[order]
            order_entries = order
        # the levels with c entries share one pattern of c (c + 1) / 2 pairs (i <= j in the
        # level, rows sorted: row_i <= row_j): enumerate them a count at a time, the levels
        # taken in the order ``self.order`` (by count)
        flats: list[np.ndarray] = []
        values: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        level_order: list[np.ndarray] = []
        pairs: list[np.ndarray] = []
        mults: list[np.ndarray] = []
        for c in np.unique(counts[counts > 0]):
            lev = np.flatnonzero(counts == c)
            i, j = np.triu_indices(int(c))
            first = ptr[lev][:, None] + i  # (levels, pairs)
            second = ptr[lev][:, None] + j
            lo, hi = rows[first], rows[second]
            flats.append((hi * m + lo).ravel())
            value = data[first] * data[second]
            mult = np.ones(value.shape)
            if k > 1:  # two columns of one row: both orders of the pair, V symmetric
                mult = np.where((lo == hi) & (i != j), 2.0, 1.0)
                value *= mult
                weights.append((lev[:, None] * k * k + sub[second] * k + sub[first]).ravel())
            values.append(value.ravel())
            if refreshable:
                pairs.append(np.stack([first.ravel(), second.ravel()]))
                mults.append(mult.ravel())
            level_order.append(lev)
        self.order = np.concatenate(level_order)
        flat = np.concatenate(flats)
        del flats
        # number the distinct positions (no sort: a dense map over the m x m positions)
        taken = np.zeros(m * m, dtype=bool)
        taken[flat] = True
        positions = np.flatnonzero(taken)
        del taken
        index = np.empty(m * m, dtype=np.int32 if positions.size < 2**31 else np.int64)
        index[positions] = np.arange(positions.size)
        row_of_pair = index[flat]
        del index, flat
        self.rows, self.cols = positions // m, positions % m
        self._weight = np.where(self.rows == self.cols, 1.0, 2.0)
        all_values = np.concatenate(values)
        # each pair's place in S's data (tags), for refresh; the values themselves otherwise
        tags = np.arange(1, all_values.size + 1).astype(float) if refreshable else all_values
        if k == 1:  # built by columns (levels in self.order) as the pairs come, stored by rows:
            c = counts[self.order]  # the product S v then writes its output in order
            indptr = np.concatenate([[0], np.cumsum(c * (c + 1) // 2)])
            self.S = sp.csc_matrix((tags, row_of_pair, indptr), shape=(positions.size, self.order.size)).tocsr()
        else:  # (no two pairs share a position and a weight: no duplicates are summed)
            self.S = sp.csr_matrix((tags, (row_of_pair, np.concatenate(weights))), shape=(positions.size, n * k * k))
        if refreshable:
            place = self.S.data.astype(np.int64) - 1
            self.S.data = all_values[place]
            self._pairs = np.concatenate(pairs, axis=1)[:, place]
            self._mult = np.concatenate(mults)[place]
            self._entry_order = order_entries  # k > 1: A's values sorted by level, then row

    def refresh(self, data) -> "WeightedGram":
        """The same for a matrix of A's pattern with new stored values ``data`` (in the order of
        the matrix given at construction): only the pair products are recomputed."""
        if not self.refreshable:
            raise ValueError("this WeightedGram was built without refreshable=True")
        values = np.asarray(data, dtype=float)[self._input_order]
        self.A.data[...] = values
        if self.S is None:
            return self
        if self._entry_order is not None:
            values = values[self._entry_order]
        np.multiply(values[self._pairs[0]], values[self._pairs[1]], out=self.S.data)
        self.S.data *= self._mult
        return self

    def _weights(self, V) -> np.ndarray:
        """The weights as S's columns take them."""
        V = np.asarray(V, dtype=float)
        return V[self.order] if self.k == 1 else V.reshape(-1)

    def values(self, V) -> np.ndarray:
        """``(A blockdiag(V) A')[rows, cols]`` for V of shape (levels,) (k = 1) or
        (levels, k, k), symmetric blocks."""
        if self.S is not None:
            return self.S @ self._weights(V)
        V = np.asarray(V, dtype=float)
        B = sp.diags(V) if self.k == 1 else sp.block_diag(list(V), format="csr")
        P = (self.A @ B @ self.A.T).tocsr()
        return np.asarray(P[self.rows, self.cols]).ravel()

    def level_products(self, C) -> np.ndarray:
        """``A_j' C A_j`` for each level j (A_j its k columns) and a symmetric C (C-ordered;
        its lower triangle is read): shape (levels,) for k = 1, else (levels, k, k)."""
        k = self.k
        if self.S is None:  # a few levels at a time: A_J' (C A_J), diagonal blocks kept
            full = np.tril(C) + np.tril(C, -1).T
            out = np.empty((self.nlevels, k, k))
            for j0 in range(0, self.nlevels, 256):
                j1 = min(self.nlevels, j0 + 256)
                AJ = self.A[:, j0 * k : j1 * k]
                P = np.asarray(AJ.T @ np.asarray(AJ.T @ full).T).reshape(j1 - j0, k, j1 - j0, k)
                out[j0:j1] = P[np.arange(j1 - j0), :, np.arange(j1 - j0), :]
            return out[:, 0, 0] if k == 1 else out
        C_at = C.reshape(-1)[self.rows * C.shape[1] + self.cols] * self._weight
        u = self.S.T @ C_at
        if self.k == 1:
            out = np.zeros(self.nlevels)  # a level with no entries: 0
            out[self.order] = u
            return out
        U = u.reshape(-1, self.k, self.k)  # each unordered pair once: split it between (c, d), (d, c)
        return 0.5 * (U + np.swapaxes(U, 1, 2))
