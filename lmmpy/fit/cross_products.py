r"""The cross-products stage between the design and the criterion (MixedModels.jl's A).

With W = diag(w) the prior weights, y the response less the offset and the random-effects
terms ordered by decreasing number of levels, Z = [Z_1 | Z_t] (the first term, the rest),
every criterion, gradient and EM step needs only the blocks of

    A = [Z X y]' W [Z X y]

held here:

    A11     (l_1, k_1, k_1)  the diagonal blocks of Z_1'WZ_1, one per level (it is block diagonal)
    At1_z   q_t x q_1        Z_t'WZ_1                        (sparse, CSR)
    At1_xy  (p+1) x q_1      [X y]'WZ_1                      (dense)
    Att_zz  q_t x q_t        Z_t'WZ_t                        (sparse, CSR; also inside Att)
    Att     N x N            [Z_t X y]'W[Z_t X y], N = q_t + p + 1   (dense)

Each block is a sum over rows, so the cross-products of row partitions add up to those of
all rows (``a + b``): the reduction a computation over partitions needs.  The rows themselves
are kept (``rows``) only to replace the response (:meth:`set_response`: refit, simulate,
bootstrap, mixedML), and only by :meth:`from_design`; a sum has none.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..formula.design import Design
from ..linalg.memory import require_memory, tail_bytes, tail_requirement


@functools.lru_cache(maxsize=16)
def empty_csr(rows: int, cols: int) -> sp.csr_matrix:
    """An empty sparse block of this shape (a model without a tail has 0 x q_1 and 0 x 0
    ones), one shared per shape and read-only: scipy's constructor checks its input at a cost
    (~30 microseconds) that matters for a small model."""
    out = sp.csr_matrix((rows, cols))
    for arr in (out.data, out.indices, out.indptr):
        arr.flags.writeable = False
    return out


def _weighted(Z: sp.csc_matrix, sw: np.ndarray | None) -> sp.csc_matrix:
    return Z if sw is None else (sp.diags(sw) @ Z).tocsc()


PRODUCTS_AT_ONCE = 2**22  # products first_term_products forms in one go (32 MB)


def first_term_products(codes: np.ndarray, values: np.ndarray, nlevels: int, M: np.ndarray) -> np.ndarray:
    """Z_1'M for the first term's block Z_1 (row i: ``values[i]`` in the k columns of level
    ``codes[i]``, column j k + a for level j and column a) and M with C columns: one bincount,

        (Z_1'M)[j k + a, c] = sum_{i: codes_i = j} values[i, a] M[i, c],

    summed in row order as the sparse product would be, without building Z_1 (for a small
    model its sparse construction and transpose cost more than the sums)."""
    n, k = values.shape
    C = M.shape[1]
    if n * k * C > PRODUCTS_AT_ONCE and C > 1:  # column by column: n k values at a time, not n k C
        return np.column_stack([first_term_products(codes, values, nlevels, M[:, [c]]) for c in range(C)])
    flat = (codes[:, None] * (k * C) + np.arange(k * C)).ravel()
    prods = (values[:, :, None] * M[:, None, :]).ravel()
    return np.bincount(flat, weights=prods, minlength=nlevels * k * C).reshape(nlevels * k, C)


@dataclass
class WeightedRows:
    """The rows behind the products with y: the first term (its level codes and its columns
    scaled by sqrt(w): Z_1 without building it), Z_t and X scaled by sqrt(w), and the offset."""

    codes1: np.ndarray
    values1: np.ndarray  # n x k_1
    nlevels1: int
    Zt: sp.csc_matrix | None  # None for a model with one term
    Xw: np.ndarray
    sqrt_w: np.ndarray | None  # None for no weights
    offset: np.ndarray | None  # None for none
    yw: np.ndarray | None = None  # the current response, weighted, less the offset

    def tail_transposed(self) -> sp.csr_matrix | None:
        """Z_t' as a CSR matrix, made once (a response's products need it each time)."""
        t = self.__dict__.get("_tail_transposed")
        if t is None and self.Zt is not None:
            t = self._tail_transposed = self.Zt.T.tocsr()
        return t

    def first_products(self, r: np.ndarray) -> np.ndarray:
        """Z_1'r (weighted)."""
        return first_term_products(self.codes1, self.values1, self.nlevels1, r[:, None])[:, 0]

    def products_with(self, r: np.ndarray) -> np.ndarray:
        """[Z_1 Z_t X r]' r for a weighted response r: the last column of A were r the response."""
        ztt = self.tail_transposed()
        parts = [self.first_products(r), ztt @ r if ztt is not None else np.zeros(0), self.Xw.T @ r, [r @ r]]
        return np.concatenate(parts)

    def weighted_response(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        if self.offset is not None:
            y = y - self.offset
        return y * self.sqrt_w if self.sqrt_w is not None else y


@dataclass
class CrossProducts:
    """The blocks of [Z X y]'W[Z X y] (see the module docstring)."""

    A11: np.ndarray
    At1_z: sp.csr_matrix
    At1_xy: np.ndarray
    Att_zz: sp.csr_matrix
    Att: np.ndarray
    rows: WeightedRows | None = None

    @property
    def q_tail(self) -> int:
        return self.At1_z.shape[0]

    @classmethod
    def from_design(cls, design: Design) -> "CrossProducts":
        terms = design.reterms
        Zs = [None] + [t.Z() for t in terms[1:]]  # Z_1 is built only where a tail needs it
        return cls.from_rows(terms, Zs, design.X, design.y, design.weights, design.offset)

    @classmethod
    def from_rows(cls, terms, Zs, X, y, w=None, offset=None) -> "CrossProducts":
        """The cross-products of the rows (Z_i per term, X, y, weights w, offset); ``Zs`` the
        terms' unweighted Z blocks (the first may be None: it is not used), so that a caller
        changing only w and y (PIRLS's working weights and response) builds them once."""
        sw = np.sqrt(w) if w is not None else None
        y = y - offset if offset is not None else y
        Xy = np.column_stack([X, y])
        first = terms[0]
        values1 = np.asarray(first.X, dtype=float)
        if sw is not None:
            Xy = Xy * sw[:, None]
            values1 = values1 * sw[:, None]
            Zs = [None if Z is None else _weighted(Z, sw) for Z in Zs]
        l1, k1 = first.nlevels, first.k
        # Z_1'Z_1 as l1 blocks of k1 x k1 (weighted)
        A11 = np.zeros((l1, k1, k1))
        for a in range(k1):
            for b in range(a, k1):
                prod = first.X[:, a] * first.X[:, b] * (w if w is not None else 1.0)
                v = np.bincount(first.codes, weights=prod, minlength=l1)
                A11[:, a, b] = v
                A11[:, b, a] = v
        q_tail = sum(t.nlevels * t.k for t in terms[1:])
        n_tail = q_tail + X.shape[1] + 1
        require_memory(tail_bytes(n_tail), tail_requirement(n_tail, q_tail, X.shape[1]))
        Zt = sp.hstack(Zs[1:], format="csc") if len(terms) > 1 else None
        # (p+1) x q1, a transposed view: the layout (and so the rounding) later products always had
        At1_xy = first_term_products(first.codes, values1, l1, Xy).T
        if Zt is not None:
            Z1 = Zs[0] if Zs[0] is not None else _weighted(first.Z(), sw)
            At1_z = (Zt.T @ Z1).tocsr()
            Att_zz = (Zt.T @ Zt).tocsr()  # sparse too: for products
            ztxy = np.asarray((Zt.T @ Xy))
            Att = np.block([[Att_zz.toarray(), ztxy], [ztxy.T, Xy.T @ Xy]])
        else:
            At1_z = empty_csr(0, l1 * k1)
            Att_zz = empty_csr(0, 0)
            Att = Xy.T @ Xy
        rows = WeightedRows(first.codes, values1, l1, Zt, Xy[:, :-1], sw, offset, Xy[:, -1].copy())
        return cls(A11, At1_z, At1_xy, Att_zz, Att, rows)

    def __add__(self, other: "CrossProducts") -> "CrossProducts":
        """The cross-products of the union of two row sets (same terms, same levels)."""
        return CrossProducts(
            self.A11 + other.A11,
            (self.At1_z + other.At1_z).tocsr(),
            self.At1_xy + other.At1_xy,
            (self.Att_zz + other.Att_zz).tocsr(),
            self.Att + other.Att,
        )

    def with_own_response(self) -> "CrossProducts":
        """A copy whose products with y (and rows' response) are its own, so that
        :meth:`set_response` on it leaves this one as it is; Z'Z, X'X and the rows are shared
        (nothing writes them)."""
        rows = dataclasses.replace(self.rows) if self.rows is not None else None
        return CrossProducts(self.A11, self.At1_z, self.At1_xy.copy(), self.Att_zz, self.Att.copy(), rows)

    def set_response(self, y) -> "CrossProducts":
        """Replace the response (one value per row, before weights and offset), in place: only
        the products with y are recomputed."""
        r = self.rows
        if r is None:
            raise ValueError(
                "these cross-products have no rows (a sum of partitions): a new response needs the partitions' own"
            )
        yw = r.yw = r.weighted_response(y)
        ztt = r.tail_transposed()
        self.At1_xy[-1] = r.first_products(yw)
        col = np.concatenate([ztt @ yw if ztt is not None else [], r.Xw.T @ yw, [yw @ yw]])
        self.Att[:, -1] = col
        self.Att[-1, :] = col
        return self
