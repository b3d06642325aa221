"""The LSTM's input half read from a table, an embedding fused in (nn/embedding.py `fuse_next`).

Algorithm: x<t> = E[:, id<t>], so W_x x<t> + b is row id<t> of the table E^T W_x^T + b
(vocab + 1 rows, the last one b alone for a zero vector: ids -1 and -2). The LSTM's step GEMM
then reads [a<t-1>] only (K = n_a instead of n_a + n_x) and the gate pass adds the step's table
row where it added b (kernels/recurrent.py `lstm_forward`, its `xb` and `idx`). Backward needs
no dX GEMM: the table's gradient is the sum of dZ's rows by token (`scatter_rows`, each split
block its own, summed in block order), from which dW_x = dT^T E^T and dE = W_x^T dT^T.
Why: the char-LM (vocab 27, embedding 16, LSTM 128, T 40) step at batch 32 went 6.23 -> 5.53 ms
median (fused against apart alternating in one process, load 2.2, Dec 3 2026), at 128 61 -> 52.
The table and dW_x, dE from the table's gradient stay numpy GEMMs (nn/recurrent_cells.py):
loops here over contiguous 4 n_a rows measured slower (table 28 against 13 us, the gradients
137 against 56 us, load ~5).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def scatter_rows(dZ, idx, T, lo, hi, out):
    """out = the sums of dZ's rows by table row: out[idx[t, lo + i]] += the row of example lo + i
    at step t (dZ blocked, see kernels/recurrent.py `lstm_forward`), steps in order."""
    mp, n = hi - lo, np.uint64(out.shape[1])
    base = T * lo
    for k in range(out.shape[0]):
        for j in range(n):
            out[k, j] = 0.0
    for t in range(T):
        for i in range(mp):
            dst, row = out[idx[t, lo + i]], dZ[base + t * mp + i]
            for j in range(n):
                dst[j] += row[j]
