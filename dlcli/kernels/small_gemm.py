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
GRU's steps: 8-32 rows into 4 x 128, 2 x 128 or 128) is `_rows_dot`, no BLAS: W read where it
lies (it is the same every step, and OpenBLAS packed all of it at every call: 256 KB a step
for the LSTM's 128 x 512), two rows of z by four of K's terms a pass along z's rows. That is
kernels/direct.py's `_convolve` (two filters by four taps along an example's output planes),
which `_rows_dot` calls: each pass loads four rows of W and two of z per eight-wide vector
for eight multiply-adds, vectorized along the columns; z's rows stay in L1. Measured (Dec 4
2026, the AMD EPYC guest, one thread, float32, median of 15 x 200 products, K x N = 128 x 512
unless said), a first version of four rows by four terms against OpenBLAS: 8 rows 16.7
against 53.1 us (63 against 20 GFLOP/s), 16 rows 37-39 against 63-64 (54-57 against 33), 32
rows 63 against 85, 16 rows of K 512 into 128 39 against 64, 3 rows 8.3 against 56.9; from 64
rows OpenBLAS is ahead (128.8 against 121.5 us; 64 x 128 x 128 39.5 against 30.8), and into
50 columns it is ahead from 64 rows too (10.5 against 5.9 us). `_convolve`'s two rows against
those four, in turn: 16 rows 36.1 against 34.4 us, 16 rows of K 512 into 128 48.5 against
44.3, 8 rows 19.7 against 18.5; the four-row copy was not kept. The sums run over K in order,
four terms a pass, multiply-adds fused where the caller's fastmath allows (the recurrent
kernels' "contract"): not BLAS's order, the same to rounding.
The char-LM (benchmarks/rnn.py, one run, 21:44 UTC, load 0.85; session 15's table before it):
LSTM at batch 32 4,755 ex/s, 1.27x PyTorch (2,501 / 2,839 ex/s, 0.89x / 0.90x); at 128 4,627,
1.26x (0.98x / 0.99x); GRU at 32 1.56x (1.31x / 1.46x), at 128 1.21x (1.16x / 1.20x).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from .direct import _convolve

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
    """z = a @ W (a (m, K), W (K, N), z (m, N); W and z C-contiguous) by kernels/direct.py's
    `_convolve`: its filters are z's rows (a^T its weights), its taps K's terms, tap k's input
    row W[k] (at k N in W's values), its output planes z's rows."""
    K, N = W.shape
    offsets = np.empty(K, dtype=np.uint64)
    for k in range(K):
        offsets[k] = k * N
    _convolve(a.T, offsets, N, W.reshape(-1), z.reshape(-1))
