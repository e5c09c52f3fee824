r"""Weighted Gram matrices ``A diag(v) A'`` of one sparse A for many weight vectors v.

Eliminating the first random-effects term (one level at a time) leaves, in the tail block,
the Schur complement ``A_tt - A_t1 diag(v) A_t1'`` with new weights v for every theta.  Its
entries are

    (A diag(v) A')[r, s] = sum over columns c holding both rows r and s of  A[r, c] A[s, c] v_c

so with the pairs (r, s, c), r >= s, enumerated once, the products ``A[r, c] A[s, c]`` form a
sparse matrix S with one row per position (r, s) of the lower triangle and one column per
column c of A, and every product is the matrix-vector product ``S v``: no symbolic work, no
sparse-sparse product and no sorting per theta.  The pairs come out grouped by column, so S
is built directly in compressed-column form.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAIR_BUDGET = 60_000_000  # pairs (12 bytes each in S); beyond it, products go through scipy


class WeightedGram:
    """``A diag(v) A'`` at the fixed lower-triangle positions ``(rows, cols)`` of A A'."""

    def __init__(self, A, budget: int = PAIR_BUDGET):
        A = sp.csc_matrix(A, dtype=float)
        A.sort_indices()
        self.shape = (A.shape[0], A.shape[0])
        m, n = A.shape
        counts = np.diff(A.indptr).astype(np.int64)
        n_pairs = int((counts * (counts + 1) // 2).sum())
        self.A = A
        if n_pairs > budget:  # too many pairs to store: the product is formed each time
            self.S = None
            AAt = sp.tril(A @ A.T).tocoo()
            self.rows, self.cols = AAt.row.astype(np.int64), AAt.col.astype(np.int64)
            self._weight = np.where(self.rows == self.cols, 1.0, 2.0)
            return
        # the columns with c entries share one pattern of c (c + 1) / 2 pairs (i <= j within
        # the column; rows sorted, so row_i <= row_j): enumerate them a count at a time, the
        # columns taken in the order ``self.order`` (by count)
        flats, values, order = [], [], []
        for c in np.unique(counts[counts > 0]):
            cols_c = np.flatnonzero(counts == c)
            i, j = np.triu_indices(int(c))
            first = A.indptr[cols_c][:, None] + i  # (columns, pairs)
            second = A.indptr[cols_c][:, None] + j
            flats.append((A.indices[second].astype(np.int64) * m + A.indices[first]).ravel())
            values.append((A.data[first] * A.data[second]).ravel())
            order.append(cols_c)
        self.order = np.concatenate(order)
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
        # built by columns (in self.order) as the pairs come, then stored by rows: the
        # product S v then writes its output in order
        c = counts[self.order]
        indptr = np.concatenate([[0], np.cumsum(c * (c + 1) // 2)])
        self.S = sp.csc_matrix((np.concatenate(values), row_of_pair, indptr),
                               shape=(positions.size, self.order.size)).tocsr()

    @property
    def diagonal(self) -> np.ndarray:
        """Which of the positions lie on the diagonal."""
        return self.rows == self.cols

    def values(self, v) -> np.ndarray:
        """``(A diag(v) A')[rows, cols]``."""
        if self.S is not None:
            return self.S @ v[self.order]
        P = (self.A @ sp.diags(v) @ self.A.T).tocsr()
        return np.asarray(P[self.rows, self.cols]).ravel()

    def inner(self, C, v) -> float:
        """``<C, A diag(v) A'>`` (Frobenius) for a symmetric C (C-ordered; its lower triangle
        is read)."""
        C_at = C.reshape(-1)[self.rows * C.shape[1] + self.cols]
        # (einsum, not BLAS ddot: a threaded level-1 call slows the next LAPACK call twofold)
        return float(np.einsum("i,i,i->", self._weight, C_at, self.values(v)))

    def flat_positions(self, ld: int):
        """Flat indices of the lower positions, and of the mirrored upper ones (off the
        diagonal), in a C-ordered array with leading dimension ``ld``."""
        off = ~self.diagonal
        return self.rows * ld + self.cols, self.cols[off] * ld + self.rows[off], off
