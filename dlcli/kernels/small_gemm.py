"""A recurrent step's product in blocks of rows that OpenBLAS multiplies on its small-matrix path
(kernels/recurrent.py, kernels/gru.py), where it has one.

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
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

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


@njit(inline="always")
def _dot_rows(a, W, out):
    """out = a @ W, in blocks of DOT_ROWS rows where OpenBLAS has its small-matrix path."""
    rows = min(DOT_ROWS, SMALL_GEMM // (W.shape[0] * W.shape[1]))
    m = a.shape[0]
    if rows < 2 or m <= rows:
        np.dot(a, W, out)
        return
    for i in range(0, m, rows):
        np.dot(a[i:i + rows], W, out[i:i + rows])
