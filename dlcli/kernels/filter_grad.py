"""A 3x3 stride-1 conv's filter gradient as register-blocked dot products on channel-major
copies of a block of rows: nn/conv_split.py's dW for the U-Net's 16-filter layers on 96x128.

dW[di, dj, c, k] = sum over output pixels (h, w) of A_prev[h + di - pad_top, w + dj -
pad_left, c] dZ[h, w, k]. A block of R output rows is copied channel-major: `At` row c holds
input channel c over the R + 2 input rows the block reads, each padded to the output's width
+ 2 (zeros outside the image; 2 zeros after the last row), and `Dt` row k holds dZ's channel k
over the R rows, padded the same way with zeros. Then every (di, dj) is a shift of At's rows
by di (width + 2) + dj: dW[di, dj, c, k] = sum over u of At[c, u + shift] Dt[k, u], one dot
product of contiguous rows, whatever the padding (Dt's zero columns cancel the pixels a shift
carries past a row end). These are kernels/direct.py's wide planes and its `_filter_dots`
(two filters by four taps a pass, eight sums that LLVM vectorizes over the pixels and keeps in
registers with the six rows' loads), on blocks of rows rather than whole images. One parallel
region a pass, a run of whole examples a Numba thread.

Why: the pass before this one took nine GEMMs (C, P) x (P, K) a block of rows, straight on
NHWC A_prev and dZ with the rows shifted: no copy, but 16 x 16 outputs over a long P are
what OpenBLAS multiplies worst, about 41 GFLOP/s over both cores on the AMD EPYC (Zen 2)
where it packs every operand (its Haswell kernels), 11.0 ms for 8x96x128x16 -> 16. Here (2
threads, float32, median of 11, Dec 4 2026, load ~1; that pass in the same process, with a
tile of two channels by four filters of its own, the same loads and sums as `_filter_dots`):
C 16 11.0 -> 5.1 ms at blocks of 8 rows (4 rows 6.4, 12 rows 5.1, 16 rows 5.2), C 32 17.0 ->
9.2, C 3 (the U-Net's first layer) 7.8 -> 1.9; a 4 x 4 tile spilled six of its 16 sums to the
stack every pass (6.8 ms at C 16), 3 x 4 too (8.2). Of the 4.4 ms at C 16 without the relu,
0.9 are the copies. The whole U-Net step, the two passes in turn in one process (20 rounds of
4 steps, load 1.7-1.9): 302.3 -> 273.4 ms, faster in 20 of 20.

A relu layer's dZ is written here too (dA where A > 0, else slope dA; its sums into the run's
db), as a block's rows are copied for Dt, in the parallel region, in place of
kernels/activations.py's serial pass over the whole layer before this one (1.2-1.35 ms a
96x128x16 layer inside the U-Net's step, its arrays out of cache; with the GEMMs before,
the U-Net's step at batch 8 went 169.1 -> 159.9 ms, 20 rounds, Dec 4 2026, 06:13 UTC).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .direct import REDUCE, _filter_dots, _geometry

# Output pixels a block covers (rows of the output's width; at 128 wide, 8 rows: At and Dt
# ~150 KB at 16 channels, in L2). Measured: see the module's docstring.
BLOCK_PIXELS = 1024


def block_rows(n_W: int) -> int:
    return max(1, BLOCK_PIXELS // n_W)


@njit(inline="always")
def _copy_input(i, h0, rows, A_prev, pad_top, pad_left, Wp, LA, At):
    """At[c, hh Wp + ww] = A_prev[i, h0 + hh - pad_top, ww - pad_left, c] over the rows + 2
    input rows output rows h0:h0 + rows read, zero outside the image, and the 2 cells after
    them zero (a last shift's discarded cells read them)."""
    H, Wd, C = A_prev.shape[1], A_prev.shape[2], A_prev.shape[3]
    for hh in range(rows + 2):
        r = h0 + hh - pad_top
        for ww in range(Wp):
            col = ww - pad_left
            o = uint64(hh * Wp + ww)
            if 0 <= r < H and 0 <= col < Wd:
                for c in range(C):
                    At[uint64(c * LA) + o] = A_prev[i, r, col, c]
            else:
                for c in range(C):
                    At[uint64(c * LA) + o] = 0.0
    end = uint64((rows + 2) * Wp)
    for c in range(C):
        At[uint64(c * LA) + end] = 0.0
        At[uint64(c * LA) + end + uint64(1)] = 0.0


@njit(inline="always")
def _copy_dZ(i, h0, rows, dZ, dA, A, slope, Wp, Dt, db):
    """Dt[k, rr Wp + w] = dZ[i, h0 + rr, w, k], rows * Wp apart, zero in the padding columns
    w >= n_W; with dA and A given, dZ first = dA g'(Z) (1 where A > 0, else slope), its sums
    added to db."""
    n_W, K = dZ.shape[2], dZ.shape[3]
    N = rows * Wp
    activated = dA.size > 0
    for rr in range(rows):
        for w in range(n_W):
            o = uint64(rr * Wp + w)
            for k in range(K):
                if activated:
                    g = dA[i, h0 + rr, w, k]
                    if A[i, h0 + rr, w, k] <= 0:
                        g *= slope
                    dZ[i, h0 + rr, w, k] = g
                    db[k] += g
                else:
                    g = dZ[i, h0 + rr, w, k]
                Dt[uint64(k * N) + o] = g
        for w in range(n_W, Wp):
            for k in range(K):
                Dt[uint64(k * N + rr * Wp + w)] = 0.0


@njit(inline="always")
def _grad_run(p, parts, A_prev, dZ, pad_top, pad_left, block_rows, dW_part, dA, A, slope,
              db_part):
    m, C = A_prev.shape[0], A_prev.shape[3]
    n_H, n_W, K = dZ.shape[1], dZ.shape[2], dZ.shape[3]
    R = min(block_rows, n_H)
    # a block's wide planes as kernels/direct.py lays out an image's: rows n_W + 2 wide (a
    # shift by dj <= 2 stays inside one), R + 2 of them and 2 cells after; each tap's shift
    Wp, LA, offsets = _geometry(A_prev, 3, R, n_W)
    At = np.empty(C * LA, dtype=dZ.dtype)
    Dt = np.empty(K * R * Wp, dtype=dZ.dtype)
    dW2 = dW_part.reshape(9 * C, K)
    for t in range(9 * C):  # loops, not array expressions: those would be parallel regions
        for k in range(K):
            dW2[t, k] = 0.0
    db = np.zeros(K, dtype=dZ.dtype)
    for i in range(p * m // parts, (p + 1) * m // parts):
        for h0 in range(0, n_H, R):
            rows = min(R, n_H - h0)
            _copy_input(i, h0, rows, A_prev, pad_top, pad_left, Wp, LA, At)
            _copy_dZ(i, h0, rows, dZ, dA, A, slope, Wp, Dt, db)
            _filter_dots(offsets, rows * Wp, At, Dt, dW2)
    for k in range(db_part.shape[0]):
        db_part[k] = db[k]


@njit(cache=True, error_model="numpy", fastmath=REDUCE)
def filter_grad(A_prev, dZ, pad_top, pad_left, block_rows, dW_parts, dA, A, slope, db_parts):
    """dW_parts[0] (3, 3, C, K) = the filter gradient of a 3x3 stride-1 convolution of A_prev
    (m, H, W, C), padded by pad_top and pad_left, with output gradient dZ (m, n_H, n_W, K),
    in blocks of block_rows output rows. A non-empty dA (dZ's shape): dZ is first written, a
    block's rows at a time, as dA g'(Z) from the layer's output A (g relu or leaky relu:
    `slope` where A <= 0), and db_parts[0] (K) takes its sums (nn/conv_split.py
    `ACTIVATION`)."""
    _grad_run(0, 1, A_prev, dZ, pad_top, pad_left, block_rows, dW_parts[0], dA, A, slope,
              db_parts[0])


@njit(parallel=True, cache=True, error_model="numpy", fastmath=REDUCE)
def filter_grad_parallel(A_prev, dZ, pad_top, pad_left, block_rows, dW_parts, dA, A, slope,
                         db_parts):
    """filter_grad over len(dW_parts) runs of examples, dW_parts[p] and db_parts[p] the run
    p's sums."""
    parts = dW_parts.shape[0]
    for p in prange(parts):
        _grad_run(p, parts, A_prev, dZ, pad_top, pad_left, block_rows, dW_parts[p], dA, A,
                  slope, db_parts[p])
