"""The linear-algebra layer: the blocked Cholesky factor, weighted Gram matrices, BLAS threads."""
