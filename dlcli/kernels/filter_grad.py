"""A 3x3 stride-1 conv's filter gradient as nine GEMMs over shifted rows, no unrolling:
nn/conv_split.py's dW for the U-Net's 16-filter layers on 96x128.

dW[di, dj] (C, K) = sum over output pixels q of A_prev[q shifted by (di, dj)]^T dZ[q]. With
NHWC and an output as wide as its input (same padding), the input pixels of a run of output
rows are one contiguous run of A_prev's rows, a constant offset away: each (di, dj) is one
GEMM of (C, P) x (P, K) over P pixels of a block of rows, straight on A_prev and dZ. A run
that crosses a row end with a column shift of 1 wraps onto the next row's first pixel
(or the last row's last): those terms, one a row, are subtracted after the GEMM. Other
widths (valid or larger padding) take one output row a GEMM, cropped to the columns that
exist. The block's rows stay in L2 for the nine GEMMs; one parallel region a pass, a run of
whole examples a Numba thread, BLAS on one thread meanwhile.

Why: kernels/transpose.py's gather pass (`backward_blocks`, nn/conv_split.py's dW before)
copied each pixel's 3x3 window into a buffer (9 C values a pixel) for one (K, P) x (P, 9 C)
GEMM: the copy cost as much as the GEMMs. Measured: see `BLOCK_PIXELS`.

A relu layer's dZ is written here too (`_dZ_rows`: dA where A > 0, its sums into the run's
db), a block's rows just before its GEMMs read them, in the parallel region, in place of
kernels/activations.py's serial pass over the whole layer before this one (1.2-1.35 ms a
96x128x16 layer inside the U-Net's step, its arrays out of cache). The U-Net's whole step at
batch 8 (its five 96x128 layers on this path), on and off in turn in one process, 20 rounds
of 4 steps (Dec 4 2026, 06:13 UTC, load 0.5-1.0): 169.1 -> 159.9 ms, faster in 17 of 20.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .small_gemm import DOT_ROWS

# Output pixels a block's GEMMs run over. Where OpenBLAS multiplies small matrices unpacked
# (kernels/small_gemm.py; one thread, CPU ms, median of 11, Dec 3 2026, 17:35 UTC, load ~4.7,
# 8x96x128xC -> 16 by rows a block, 128 pixels a row): C 16, the gather pass 6.0-6.8, here 5.3
# at 1 row, 4.8 at 2, 5.2 at 3-16; C 32 10.4 against 10.2, 9.9, 10.5 at 1-3 rows, 11.7 at 4-8,
# 20.0 at 16. Where it packs every operand (its Haswell kernels on an AMD EPYC; both threads,
# the relu's dZ included, median of 9, Dec 4 2026): C 16 13.6 ms at 1 row, 12.4 at 2, 11.4 at
# 4, 11.2 at 8-96; C 32 19.8, 17.9, 17.5, 16.9 at 8; the U-Net's step, 2 and 8 rows in turn
# (20 rounds of 4, load 1.2-1.7) 318.0 -> 313.1 ms, faster in 15 of 20.
BLOCK_PIXELS = 256 if DOT_ROWS else 1024


def block_rows(n_W: int) -> int:
    return max(1, BLOCK_PIXELS // n_W)


@njit(inline="always")
def _rows(x, r0, r1):
    """Rows r0:r1 of the C-contiguous 2-D x, typed contiguous (numba's np.dot wants that)."""
    k = x.shape[1]
    return x.reshape(-1)[r0 * k:r1 * k].reshape((r1 - r0, k))


@njit(inline="always")
def _dZ_rows(dA, A, slope, dZ, q0, q1, db):
    """dZ = dA g'(Z) over the flat pixels q0:q1, from A = g(Z) (g piecewise linear: 1 where
    A > 0, else slope), their sums over the pixels added to db: kernels/activations.py's
    backward select, for the rows a block's GEMMs read next."""
    K = dZ.shape[3]
    da, a, dz = dA.reshape(-1), A.reshape(-1), dZ.reshape(-1)
    for q in range(q0, q1):
        o = uint64(q * K)
        for k in range(K):
            u = o + uint64(k)
            g = da[u] if a[u] > 0 else da[u] * slope
            dz[u] = g
            db[k] += g


@njit(inline="always")
def _grad_run(p, parts, A_prev, dZ, pad_top, pad_left, block_rows, dW_part, dA, A, slope,
              db_part):
    m, H, Wd, C = A_prev.shape
    n_H, n_W, K = dZ.shape[1], dZ.shape[2], dZ.shape[3]
    i0, i1 = p * m // parts, (p + 1) * m // parts
    A2, dZ2 = A_prev.reshape(-1, C), dZ.reshape(-1, K)
    dW2 = dW_part.reshape(9, C, K)
    for t in range(9):  # loops, not array expressions: those would be parallel regions
        for c in range(C):
            for k in range(K):
                dW2[t, c, k] = 0.0
    activated = dA.size > 0  # dZ's rows from dA and A first, a block at a time
    db = np.zeros(K, dtype=dZ.dtype)
    tmp = np.empty((C, K), dtype=dZ.dtype)
    # runs across rows need the input's rows as wide as the output's, one column shift at most
    wide = n_W == Wd and pad_left == 1
    rows = block_rows if wide else 1
    for i in range(i0, i1):
        for h0 in range(0, n_H, rows):
            h1 = min(h0 + rows, n_H)
            if activated:
                _dZ_rows(dA, A, slope, dZ, (i * n_H + h0) * n_W, (i * n_H + h1) * n_W, db)
            for di in range(3):
                # output rows ha:hb read input rows ha + di - pad_top ... inside the image
                ha, hb = max(h0, pad_top - di), min(h1, H + pad_top - di)
                if ha >= hb:
                    continue
                for dj in range(3):
                    off = dj - pad_left  # input column = output column + off
                    # output columns wa:wb whose input column exists (one row at a time), or
                    # the whole rows (runs across rows), the wrapped pixels taken out after
                    wa, wb = (0, n_W) if wide else (max(0, -off), min(n_W, Wd - off))
                    if wa >= wb:
                        continue
                    q0 = (i * n_H + ha) * n_W + wa
                    q1 = (i * n_H + hb - 1) * n_W + wb
                    D = ((i * H + ha + di - pad_top) * Wd + wa + off) - q0
                    if wide and off < 0:  # the run's first pixel would read before its row
                        q0 += 1
                    if wide and off > 0:  # the run's last pixel would read past its row
                        q1 -= 1
                    if q1 <= q0:  # one pixel a row, and that one outside the image
                        continue
                    np.dot(_rows(A2, q0 + D, q1 + D).T, _rows(dZ2, q0, q1), tmp)
                    if wide and off != 0:
                        # each row boundary inside the run: one wrapped (input, output) pair
                        for h in range(ha + 1, hb):
                            q = (i * n_H + h) * n_W - (1 if off > 0 else 0)
                            for c in range(C):
                                a = A2[q + D, c]
                                for k in range(K):
                                    tmp[c, k] -= a * dZ2[q, k]
                    for c in range(C):
                        for k in range(K):
                            dW2[di * 3 + dj, c, k] += tmp[c, k]
    for k in range(db_part.shape[0]):
        db_part[k] = db[k]


@njit(cache=True)
def filter_grad(A_prev, dZ, pad_top, pad_left, block_rows, dW_parts, dA, A, slope, db_parts):
    """dW_parts[0] (3, 3, C, K) = the filter gradient of a 3x3 stride-1 convolution of A_prev
    (m, H, W, C), padded by pad_top and pad_left, with output gradient dZ (m, n_H, n_W, K).
    A non-empty dA (dZ's shape): dZ is first written, a block's rows at a time, as dA g'(Z)
    from the layer's output A (g relu or leaky relu: `slope` where A <= 0), and db_parts[0]
    (K) takes its sums (`ACTIVATION`)."""
    _grad_run(0, 1, A_prev, dZ, pad_top, pad_left, block_rows, dW_parts[0], dA, A, slope,
              db_parts[0])


@njit(parallel=True, cache=True)
def filter_grad_parallel(A_prev, dZ, pad_top, pad_left, block_rows, dW_parts, dA, A, slope,
                         db_parts):
    """filter_grad over len(dW_parts) runs of examples, dW_parts[p] and db_parts[p] the run
    p's sums."""
    parts = dW_parts.shape[0]
    for p in prange(parts):
        _grad_run(p, parts, A_prev, dZ, pad_top, pad_left, block_rows, dW_parts[p], dA, A,
                  slope, db_parts[p])
