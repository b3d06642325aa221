"""A recurrent step's product in blocks of rows that OpenBLAS multiplies on its small-matrix path
(kernels/recurrent.py, kernels/gru.py).

OpenBLAS (its SkylakeX/Zen kernels, the build numpy and scipy ship) multiplies small matrices,
M N K <= 1e6, without packing them first: (8, 128) @ (128, 512) runs at 114 GFLOP/s on one
core, (16, 128) @ (128, 512) at 53 (measured Dec 3 2026, float32). A step's product is
therefore done in blocks of rows small enough for that path (no change for any other BLAS:
the same product, row by row the same sums).
"""

from __future__ import annotations

import numpy as np
from numba import njit

SMALL_GEMM = 1_000_000
DOT_ROWS = 8  # 4-12 rows measured alike (103-113 GFLOP/s); 15 rows 78-88


@njit(inline="always")
def _dot_rows(a, W, out):
    """out = a @ W in blocks of rows that OpenBLAS multiplies on its small-matrix path."""
    rows = min(DOT_ROWS, SMALL_GEMM // (W.shape[0] * W.shape[1]))
    m = a.shape[0]
    if rows < 2 or m <= rows:
        np.dot(a, W, out)
        return
    for i in range(0, m, rows):
        np.dot(a[i:i + rows], W, out[i:i + rows])
