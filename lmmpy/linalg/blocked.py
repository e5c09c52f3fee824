r"""The blocked Cholesky factor of the penalised normal equations.

With the random-effects terms ordered by decreasing number of levels, write
``Z = [Z_1 | Z_t]`` (the first term and the rest) and ``T = [Z_t  X  y]`` (the *tail*).  The
matrix to factor, ``Omega = [Z Lambda  X  y]' [Z Lambda  X  y] + diag(I_q, 0, 0)``, has blocks

    Omega_11 = Lambda_1' Z_1'Z_1 Lambda_1 + I      block diagonal: one k x k block per level
    Omega_t1 = Lambda_t' T'Z_1 Lambda_1              sparse (X and y rows dense)
    Omega_tt = Lambda_t' T'T Lambda_t + diag(I, 0)   dense

and the lower Cholesky factor ``L = [[L_11, 0], [L_t1, L_tt]]`` follows block by block:

    L_11 = chol(Omega_11)                 one small Cholesky per level (batched)
    L_t1 = Omega_t1 L_11^{-T}             a sparse product
    L_tt = chol(Omega_tt - L_t1 L_t1')    one dense LAPACK Cholesky

(``Lambda_t`` acts as the identity on the X and y columns.)  This is the MixedModels.jl
scheme with the blocks after the first gathered into one dense block: crossed factors fill
that block in anyway, and one LAPACK call on it costs what the blockwise updates would.
Everything lme4's profiled criteria need is read off L: ``log|L_theta|^2`` from the diagonals
of L_11 and of the Z part of L_tt, ``R_X`` and ``r_yy = sqrt(pwrss)`` from its last rows.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp


def mirror_lower(M: np.ndarray, block: int = 256) -> np.ndarray:
    """Copy the lower triangle of the square M onto its upper one, in place (blockwise
    transposed copies: fast, unlike a fancy-indexed scatter)."""
    n = M.shape[0]
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        M[j0:j1, j1:] = M[j1:, j0:j1].T
        D = M[j0:j1, j0:j1]
        iu = np.triu_indices(j1 - j0, 1)
        D[iu] = D.T[iu]
    return M


class UniformBlockDiagonal:
    """``l`` dense k x k blocks on the diagonal, stored as an (l, k, k) array."""

    def __init__(self, blocks: np.ndarray):
        self.blocks = blocks

    @property
    def nblocks(self) -> int:
        return self.blocks.shape[0]

    @property
    def k(self) -> int:
        return self.blocks.shape[1]

    def cholesky(self) -> "UniformBlockDiagonal":
        if self.k == 1:
            return UniformBlockDiagonal(np.sqrt(self.blocks))
        return UniformBlockDiagonal(np.linalg.cholesky(self.blocks))

    def logdet(self) -> float:
        """log det of a lower-triangular factor: sum of log diagonals."""
        return float(np.log(np.diagonal(self.blocks, axis1=1, axis2=2)).sum())

    def inverse(self) -> "UniformBlockDiagonal":
        if self.k == 1:
            return UniformBlockDiagonal(1.0 / self.blocks)
        return UniformBlockDiagonal(np.linalg.inv(self.blocks))

    def to_sparse(self) -> sp.csr_matrix:
        l, k, _ = self.blocks.shape
        rows = np.repeat(np.arange(l * k), k)  # block j, row a: columns j k .. j k + k - 1
        cols = np.repeat(np.arange(l) * k, k * k) + np.tile(np.arange(k), l * k)
        return sp.csr_matrix((self.blocks.ravel(), (rows, cols)), shape=(l * k, l * k))

    def right_multiply(self, M: np.ndarray) -> np.ndarray:
        """Dense ``M @ self`` for M with l k columns."""
        l, k, _ = self.blocks.shape
        return np.einsum("rli,lij->rlj", M.reshape(M.shape[0], l, k), self.blocks).reshape(M.shape[0], l * k)

    def solve_transpose(self, v: np.ndarray) -> np.ndarray:
        """``self^{-T} v`` for a lower-triangular block factor."""
        l, k, _ = self.blocks.shape
        if k == 1:
            return v / self.blocks.ravel()
        return np.linalg.solve(np.swapaxes(self.blocks, 1, 2), v.reshape(l, k, 1)).reshape(-1)


class BlockedCholesky:
    """The factor L of Omega for one theta; see the module docstring for the blocks."""

    def __init__(
        self, L11: UniformBlockDiagonal, Lt1_z: sp.csr_matrix, Lt1_xy: np.ndarray, Ltt: np.ndarray, q_tail: int, p: int
    ):
        self.L11 = L11  # first term
        self.Lt1_z = Lt1_z  # rows of the other terms' random effects (sparse)
        self.Lt1_xy = Lt1_xy  # rows of X and y (dense)
        self.Ltt = Ltt  # dense tail, lower triangular
        self.q_tail, self.p = q_tail, p

    def owned(self) -> "BlockedCholesky":
        """This factor with its own copy of the dense tail (which may live in a work buffer
        that the next evaluation overwrites); the other blocks are never written after."""
        return BlockedCholesky(self.L11, self.Lt1_z, self.Lt1_xy, self.Ltt.copy(), self.q_tail, self.p)

    @property
    def logdet_L2(self) -> float:
        """log |L_theta|^2 over the random-effects part."""
        tail = np.log(np.diagonal(self.Ltt)[: self.q_tail]).sum() if self.q_tail else 0.0
        return 2.0 * (self.L11.logdet() + tail)

    @property
    def RX(self) -> np.ndarray:
        """Lower-triangular R_X' (p x p): the X block of L."""
        s = self.q_tail
        return self.Ltt[s : s + self.p, s : s + self.p]

    @property
    def logdet_RX2(self) -> float:
        return 2.0 * float(np.log(np.diagonal(self.RX)).sum())

    @property
    def pwrss(self) -> float:
        """Penalised weighted residual sum of squares, r_yy^2."""
        return float(self.Ltt[-1, -1] ** 2)

    def solve_LZt(self, rhs: np.ndarray) -> np.ndarray:
        """``L_Z^{-T} rhs`` for the random-effects part L_Z of L (rhs: q x m)."""
        rhs = np.asarray(rhs, dtype=float)
        q1 = rhs.shape[0] - self.q_tail
        if self.q_tail:
            x_tail = sla.solve_triangular(
                self.Ltt[: self.q_tail, : self.q_tail], rhs[q1:], lower=True, trans="T", check_finite=False
            )
            c1 = rhs[:q1] - self.Lt1_z.T @ x_tail
        else:
            x_tail, c1 = rhs[q1:], rhs[:q1]
        cols = [self.L11.solve_transpose(c1[:, j]) for j in range(c1.shape[1])]
        return np.vstack([np.column_stack(cols) if cols else c1, x_tail])

    def solve_u_beta(self, beta=None):
        """The penalised least-squares solution: L' [u; beta] = (last row of L)'; with
        ``beta`` given, the conditional modes u for that beta instead (beta = 0: the
        random effects of y with no fixed part)."""
        s, p = self.q_tail, self.p
        if beta is not None:
            beta = np.asarray(beta, dtype=float)
        elif p:
            beta = sla.solve_triangular(self.RX, self.Ltt[s + p, s : s + p], lower=True, trans="T", check_finite=False)
        else:
            beta = np.zeros(0)
        # L_Z' u = l_yZ' - L_XZ' beta
        rhs = np.concatenate(
            [self.Lt1_xy[-1] - self.Lt1_xy[:-1].T @ beta, self.Ltt[s + p, :s] - self.Ltt[s : s + p, :s].T @ beta]
        )
        return self.solve_LZt(rhs[:, None])[:, 0], beta

    def fixed_correction(self) -> np.ndarray:
        """G = R_X^{-1} L_XZ L_Z^{-1} (p x q): the REML conditional covariance of u, with beta
        integrated out, is (L_Z L_Z')^{-1} + G'G."""
        s, p = self.q_tail, self.p
        LXZ = np.hstack([self.Lt1_xy[:-1], self.Ltt[s : s + p, :s]])  # p x q
        H = self.solve_LZt(LXZ.T).T
        return sla.solve_triangular(self.RX, H, lower=True, check_finite=False)

    def cond_cov_blocks(self, sizes, chunk=2048, reml=False):
        """Diagonal blocks of (L_theta L_theta')^{-1}, one (l, k, k) array per term; with
        ``reml`` those of (L_theta L_theta')^{-1} + G'G (see :meth:`fixed_correction`).

        With W = L_theta^{-1}: the tail's blocks come from W_tt' W_tt, the first term's from
        L_11^{-T} L_11^{-1} + L_11^{-T} C' C L_11^{-1} where C = L_tt^{-1} L_t1 (in chunks of columns).
        """
        (l1, k1), rest = sizes[0], sizes[1:]
        inv11 = self.L11.inverse().blocks  # L_11^{-1} per level
        out1 = np.einsum("lji,ljk->lik", inv11, inv11)
        out = []
        if self.q_tail:
            Lz = self.Ltt[: self.q_tail, : self.q_tail]
            Wtt = sla.solve_triangular(Lz, np.eye(self.q_tail), lower=True)
            G = Wtt.T @ Wtt
            start = 0
            for l, k in rest:
                idx = start + np.arange(l * k).reshape(l, k)
                out.append(G[idx[:, :, None], idx[:, None, :]])
                start += l * k
            Lt1 = self.Lt1_z.tocsc()
            for c0 in range(0, l1 * k1, chunk * k1):
                c1 = min(l1 * k1, c0 + chunk * k1)
                C = sla.solve_triangular(Lz, Lt1[:, c0:c1].toarray(), lower=True)
                nl = (c1 - c0) // k1
                CtC = np.einsum("ria,rib->iab", C.reshape(-1, nl, k1), C.reshape(-1, nl, k1))
                blk = inv11[c0 // k1 : c1 // k1]
                out1[c0 // k1 : c1 // k1] += np.einsum("lji,ljk,lkm->lim", blk, CtC, blk)
        blocks = [out1] + out
        if reml and self.p:
            G = self.fixed_correction()
            start = 0
            for b, (l, k) in zip(blocks, sizes):
                Gt = G[:, start : start + l * k].reshape(self.p, l, k)
                b += np.einsum("pla,plb->lab", Gt, Gt)
                start += l * k
        return blocks
