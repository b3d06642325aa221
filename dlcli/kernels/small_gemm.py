"""A recurrent step's product (kernels/recurrent.py, kernels/gru.py): in blocks of rows that
OpenBLAS multiplies on its small-matrix path where it has one, else for a few rows a
register-blocked loop of our own (`_rows_dot`), else one BLAS call.

OpenBLAS's AVX-512 kernels (SkylakeX, Cooperlake, SapphireRapids: what it picks on an Intel
AVX-512 core or a Zen 4) multiply small matrices, M N K <= 1e6, without packing them first:
(8, 128) @ (128, 512) ran at 114 GFLOP/s on one core, (16, 128) @ (128, 512) at 53 (2-core
Intel guest, Dec 3 2026, float32). A step's product is done there in blocks of 8 rows.
Its other kernels pack every operand, so blocks only add calls: on a 2-vCPU AMD EPYC (Zen 2,
OpenBLAS's Haswell kernels, Dec 4 2026, one thread, float32, (m, 128) @ (128, 512)) blocks of
8 rows ran at 19-20 GFLOP/s, 16 at 32, 32 at 48 and the whole 64 at 65; the char-LM
(benchmarks/rnn.py) with whole products: LSTM at batch 128 2,216 -> 3,416 / 3,326 ex/s (0.76x
-> 0.94x / 0.95x PyTorch), GRU at 128 0.75x / 0.76x -> 1.26x / 1.25x.
So the product is blocked only where SciPy's BLAS (the one Numba's np.dot
calls) is an OpenBLAS on one of those kernels (`small_matrix_path`), decided once per process
as this module loads: DOT_ROWS is a compile-time constant of the kernels that inline
`_dot_rows`, and Numba's cache keys them by the CPU, which is what OpenBLAS's choice follows.
Either way the product is the same, row by row the same sums.

Elsewhere a product of up to ROWS_MAX rows into N >= COLUMNS_MIN columns (the LSTM's and
GRU's steps: 8-32 rows into 4 x 128, 2 x 128 or 128) is `_rows_dot`, no BLAS: four rows by
four of K a pass along z's rows, W read in place (it is the same every step, and OpenBLAS
packed all of it at every call: 256 KB a step for the LSTM's 128 x 512). Each pass loads four
rows of W and four of z per eight-wide vector and does sixteen multiply-adds (LLVM vectorizes
the pass along the columns); z's four rows stay in L1. Measured (Dec 4 2026, the AMD EPYC
guest, one thread, float32, median of 15 x 200 products, K x N = 128 x 512 unless said):
8 rows 16.7 against OpenBLAS's 53.1 us (63 against 20 GFLOP/s), 16 rows 37-39 against 63-64
(54-57 against 33), 32 rows 63 against 85, 16 rows of K 512 into 128 39 against 64, 3 rows 8.3
against 56.9; from 64 rows OpenBLAS is ahead (128.8 against 121.5 us; 64 x 128 x 128 39.5
against 30.8), and into 50 columns it is ahead from 64 rows too (10.5 against 5.9 us). Its
sums run over K in order, four terms a pass, multiply-adds fused where the caller's
fastmath allows (the recurrent kernels' "contract"): not BLAS's order, the same to rounding.
The char-LM (benchmarks/rnn.py, one run, 21:44 UTC, load 0.85; session 15's table before it):
LSTM at batch 32 4,755 ex/s, 1.27x PyTorch (2,501 / 2,839 ex/s, 0.89x / 0.90x); at 128 4,627,
1.26x (0.98x / 0.99x); GRU at 32 1.56x (1.31x / 1.46x), at 128 1.21x (1.16x / 1.20x).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, uint64

SMALL_GEMM = 1_000_000
SMALL_PATH_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def small_matrix_path() -> bool:
    """Whether the BLAS that Numba's np.dot calls is an OpenBLAS on kernels with a small-matrix
    path (its `architecture`, as threadpoolctl reads it from the library)."""
    from .threads import _controller
    controller = _controller()  # loads SciPy's BLAS first
    if controller is None:
        return False
    import scipy
    libs = [lib for lib in controller.lib_controllers if lib.user_api == "blas"]
    # SciPy's own where numpy's wheel loads another copy (site-packages/scipy.libs, numpy.libs)
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    libs = [lib for lib in libs if os.path.realpath(lib.filepath).startswith(
        (root + os.sep, root + ".libs" + os.sep))] or libs
    return bool(libs) and all(lib.internal_api == "openblas"
                              and str(getattr(lib, "architecture", "")).lower() in SMALL_PATH_CORES
                              for lib in libs)


# 4-12 rows measured alike on the small-matrix path (103-113 GFLOP/s), 15 rows 78-88; 0: whole
DOT_ROWS = 8 if small_matrix_path() else 0
ROWS_MAX, COLUMNS_MIN = 32, 128  # where `_rows_dot` beats a whole OpenBLAS product (docstring)


@njit(inline="always")
def _dot_rows(a, W, out):
    """out = a @ W: in blocks of DOT_ROWS rows where OpenBLAS has its small-matrix path, else
    `_rows_dot` for a few rows into many columns, else one BLAS product. W and out C-contiguous."""
    rows = min(DOT_ROWS, SMALL_GEMM // (W.shape[0] * W.shape[1]))
    m = a.shape[0]
    if DOT_ROWS == 0 and m <= ROWS_MAX and W.shape[1] >= COLUMNS_MIN:
        _rows_dot(a, W, out)
        return
    if rows < 2 or m <= rows:
        np.dot(a, W, out)
        return
    for i in range(0, m, rows):
        np.dot(a[i:i + rows], W, out[i:i + rows])


@njit(inline="always")
def _rows_dot(a, W, z):
    """z = a @ W (a (m, K), W (K, N), z (m, N); W and z C-contiguous): four rows of z at a time,
    each pass adding four of K's terms along the rows' N columns (module docstring)."""
    m, K = a.shape
    N = W.shape[1]
    zf, wf = z.reshape(-1), W.reshape(-1)
    i = 0
    while i + 4 <= m:
        r0, r1, r2, r3 = uint64(i * N), uint64((i + 1) * N), uint64((i + 2) * N), uint64((i + 3) * N)
        for j in range(N):
            u = uint64(j)
            zf[r0 + u] = zf[r1 + u] = zf[r2 + u] = zf[r3 + u] = 0.0
        k = 0
        while k + 4 <= K:
            a00, a01, a02, a03 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
            a10, a11, a12, a13 = a[i + 1, k], a[i + 1, k + 1], a[i + 1, k + 2], a[i + 1, k + 3]
            a20, a21, a22, a23 = a[i + 2, k], a[i + 2, k + 1], a[i + 2, k + 2], a[i + 2, k + 3]
            a30, a31, a32, a33 = a[i + 3, k], a[i + 3, k + 1], a[i + 3, k + 2], a[i + 3, k + 3]
            w0, w1, w2, w3 = uint64(k * N), uint64((k + 1) * N), uint64((k + 2) * N), uint64((k + 3) * N)
            for j in range(N):
                u = uint64(j)
                v0, v1, v2, v3 = wf[w0 + u], wf[w1 + u], wf[w2 + u], wf[w3 + u]
                zf[r0 + u] += a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                zf[r1 + u] += a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                zf[r2 + u] += a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                zf[r3 + u] += a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
            k += 4
        while k < K:
            a00, a10, a20, a30, w0 = a[i, k], a[i + 1, k], a[i + 2, k], a[i + 3, k], uint64(k * N)
            for j in range(N):
                u = uint64(j)
                v0 = wf[w0 + u]
                zf[r0 + u] += a00 * v0
                zf[r1 + u] += a10 * v0
                zf[r2 + u] += a20 * v0
                zf[r3 + u] += a30 * v0
            k += 1
        i += 4
    while i < m:  # the rows left over, one at a time
        r0 = uint64(i * N)
        for j in range(N):
            zf[r0 + uint64(j)] = 0.0
        k = 0
        while k + 4 <= K:
            a00, a01, a02, a03 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
            w0, w1, w2, w3 = uint64(k * N), uint64((k + 1) * N), uint64((k + 2) * N), uint64((k + 3) * N)
            for j in range(N):
                u = uint64(j)
                zf[r0 + u] += a00 * wf[w0 + u] + a01 * wf[w1 + u] + a02 * wf[w2 + u] + a03 * wf[w3 + u]
            k += 4
        while k < K:
            a00, w0 = a[i, k], uint64(k * N)
            for j in range(N):
                zf[r0 + uint64(j)] += a00 * wf[w0 + uint64(j)]
            k += 1
        i += 1
