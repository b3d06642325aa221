"""GEMMs split by rows across Numba's threads, each part one single-threaded BLAS call.

Why: on this shared 2-core machine a 2-thread OpenBLAS GEMM waits, at every synchronisation,
for whichever of its threads another process has descheduled. While a neighbour held a core
(load 2.5-2.8, Dec 3 2026) the U-Net's conv2d_transpose layers, three GEMMs each on 2-thread
BLAS, took 54-407 ms a step where the Winograd layers beside them, already run this way
(kernels/winograd.py), took 12-68 ms. Here each thread takes a contiguous run of rows and
makes its GEMM with BLAS held to one thread (`winograd.one_blas_thread`), so the parts meet
once, at the end of the region; a part whose core is taken only delays its own rows.

The pointwise conv2d tried it and kept OpenBLAS's own threads (nn/conv_pointwise.py).

    matmul(a, b, out)        out = a @ b, rows of a (and out) split
    matmul_tn(a, b, out)     out = a.T @ b, the shared rows of a and b split, a partial
                             product per thread, summed after the region

Below PARALLEL_MIN multiply-adds both are plain np.matmul: the region's wake-up (30-150 us)
would cost more than the GEMM.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

PARALLEL_MIN = 1 << 22  # multiply-adds


@njit(inline="always")
def _part(x, r0, r1):
    """Rows r0:r1 of the C-contiguous 2-D x, typed contiguous (numba's np.dot wants that)."""
    k = x.shape[1]
    return x.reshape(-1)[r0 * k:r1 * k].reshape((r1 - r0, k))


@njit(parallel=True, cache=True)
def matmul_parallel(a, b, out, parts):
    n = a.shape[0]
    for p in prange(parts):
        r0, r1 = p * n // parts, (p + 1) * n // parts
        if r1 > r0:
            np.dot(_part(a, r0, r1), b, _part(out, r0, r1))


@njit(parallel=True, cache=True)
def matmul_tn_parallel(a, b, out_parts):
    n, parts = a.shape[0], out_parts.shape[0]
    for p in prange(parts):
        r0, r1 = p * n // parts, (p + 1) * n // parts
        if r1 > r0:
            np.dot(_part(a, r0, r1).T, _part(b, r0, r1), out_parts[p])
        else:
            out_parts[p][:] = 0.0


def _threads(n_rows: int, work: int) -> int:
    if work < PARALLEL_MIN:
        return 1
    from numba import get_num_threads
    return max(1, min(get_num_threads(), n_rows))


def matmul(a, b, out):
    """out = a @ b (a, out: C-contiguous 2-D; b: any 2-D, copied contiguous if it is not)."""
    parts = _threads(a.shape[0], a.shape[0] * a.shape[1] * b.shape[1])
    if parts == 1 or a.dtype != b.dtype or not out.flags.c_contiguous:
        return np.matmul(a, b, out=out)
    from .winograd import one_blas_thread
    if not (b.flags.c_contiguous or b.flags.f_contiguous):
        b = np.ascontiguousarray(b)
    with one_blas_thread():
        matmul_parallel(np.ascontiguousarray(a), b, out, parts)
    return out


def matmul_tn(a, b, out):
    """out = a.T @ b (a, b: C-contiguous 2-D with the same rows)."""
    parts = _threads(a.shape[0], a.shape[0] * a.shape[1] * b.shape[1])
    if parts == 1 or a.dtype != b.dtype:
        return np.matmul(a.T, b, out=out)
    from .winograd import one_blas_thread
    out_parts = np.empty((parts,) + out.shape, dtype=out.dtype)
    with one_blas_thread():
        matmul_tn_parallel(np.ascontiguousarray(a), np.ascontiguousarray(b), out_parts)
    return out_parts.sum(axis=0, out=out)
