"""Winograd F(2x2, 3x3) where a layer has many channels and few pixels (the U-Net's 12x16 and
6x8 levels, 128-256 channels): the whole batch's 16 GEMMs split between the threads by tile
position, not by examples.

Why: kernels/winograd.py's blocks split the batch by examples, so each thread multiplies its
examples' tiles by ALL of U (16 x C x K: 16x256x256 float32 is 4 MB, more than a core's L2)
and both threads stream the whole of it: the 16 GEMMs of 8x6x8x256 -> 256 (T = 96 tiles,
the GEMMs alone in a probe) took 3.59 ms on 2 threads split by rows (56 GFLOP/s), 2.81 split by position (72), 4.51 on
one thread (this machine: AMD EPYC, 2 vCPUs, 512 KB L2 each, OpenBLAS's Haswell kernels;
medians of 40, load ~0.8, Dec 4 2026). Here thread t multiplies the WHOLE batch's T tiles for
the positions it takes, (T x C) @ U[k] -> (T x K), so each U[k] is read by one thread, once;
and where the blocks had cut an example into tile rows (12x16x256 -> 128: GEMMs of 32 rows
against a U[k] that OpenBLAS packs at every call) the GEMMs are the whole batch's 384 rows.

How it runs: one parallel region (a prange of one part a Numba thread) in three phases,
each thread waiting for the other between them on a done-counter (spinning with yields, as
kernels/duo.py's helper waits, so that a waiter takes no core from a thread that needs it):
    1. the input transform (kernels/winograd.py `_input_tiles`) by examples;
    2. the 16 GEMMs by position;
    3. the output transform (`_output_tiles`, with its epilogue or moments) by chunks of
       examples.
The backward (`backward_positions_parallel`) likewise: V and dM by chunks of examples; dU[k] = V[k]^T
dM[k] and dV[k] = dM[k] U[k]^T by position (the whole batch in each GEMM: no per-thread dU
to add); then the scatter of dA_prev by chunks of examples and dW = G^T dU G by ranges of
channels (kernels/winograd_filters.py `filter_grad_channels`).

Work is never assigned to a thread: every phase's units (examples, positions, chunks) are
claimed from an atomic counter, and a thread waits only once its phase has no units left to
claim. So if one worker runs both parts one after the other (one Numba thread, another
threading layer, a worker that never comes), the first part does all the work and nothing
waits for ever. A chunk's moments and bias gradient go to that chunk's own row (not the
thread's), so the results never depend on which thread took what.

What it measured (float32, batch 8, relu, 2 threads, alternating with the blocks in one
process, medians of 41, load 0.9-1.1, Dec 4 2026, 13:56 UTC). The forward alone
(kernels/winograd.py `convolve`), ms: 6x8x256 -> 256 2.38 -> 1.99 (faster in 41 of 41),
6x8x128 -> 256 1.22 -> 1.08 (38/41), 12x16x256 -> 128 6.26 -> 3.79 (41/41), 12x16x128 -> 128
2.01 -> 1.93 (28/41). The layer's forward / backward (nn/conv_winograd.py, filter transforms
included): 6x8x256 -> 256 4.89 / 11.17 -> 4.13 / 8.49, 6x8x128 -> 256 2.82 / 5.58 -> 2.27 /
4.41, 12x16x256 -> 128 6.30 / 12.92 -> 5.66 / 11.39, 12x16x128 -> 128 3.49 / 6.61 -> 3.13 /
5.54. A whole U-Net training step (benchmarks/cnn.py's unet16, 30 rounds of 4 steps each way,
14:09-14:11 UTC, load 1.3-1.8): 408.3 -> 391.3 ms, faster in 18 of 30; again 14:33-14:35,
40 rounds, load 1.0-1.8: 405.7 -> 399.1, 26 of 40. The deep layers are a small share of the
step. `benchmarks/cnn.py --only unet16`, 3 runs each way alternating with main's code (39da98b,
14:12-14:23, load 1.6-2.0): ratios 0.81 / 0.88 / 0.90x before, 0.86 / 0.92 / 0.86x after,
within the noise; lenet64 2.06 -> 2.12x, resnet64 1.30 -> 1.35x (once each: they never reach
the gate).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from .duo import _atomic_add, _atomic_load, _pause, _yield
from .winograd import _input_tiles, _output_tiles, out_scratch, position_stride, row_scratch
from .winograd_filters import filter_grad_channels
from .winograd_grad import _input_grad_tiles, _output_grad_tiles
from .winograd_grad import covers as _covers

# cells of the counters array: phase ph's units claimed at 16 ph, done at 16 ph + 8, each
# on its own 64-byte line
PHASES = 3
CELLS = 16 * PHASES


def counters() -> np.ndarray:
    """The shared counters of one call, at 0."""
    return np.zeros(CELLS, dtype=np.int64)


@njit(inline="always")
def _claim(sync, phase):
    return _atomic_add(sync, 16 * phase, 1)


@njit(inline="always")
def _done(sync, phase):
    _atomic_add(sync, 16 * phase + 8, 1)


@njit(inline="always")
def _wait(sync, phase, units):
    """Until all `units` of the phase are done: by now every one is claimed, so the thread
    that holds one is running it."""
    spins = 0
    while _atomic_load(sync, 16 * phase + 8) < units:
        _pause()
        spins += 1
        if spins >= 8:  # a few pauses, then the core to whoever needs it (kernels/duo.py)
            _yield()
            spins = 0


@njit(inline="always")
def _forward_part(A_prev, U, pad_top, pad_left, Z, V, M, chunks, acc, epilogue, sync):
    m, C, K = A_prev.shape[0], U.shape[1], U.shape[2]
    tiles_H, tiles_W = (Z.shape[1] + 1) // 2, (Z.shape[2] + 1) // 2
    per = tiles_H * tiles_W
    T = m * per
    pv, pm = position_stride(T * C), position_stride(T * K)
    D, y = row_scratch(tiles_W, C, Z.dtype), out_scratch(tiles_W, K, Z.dtype)
    i = _claim(sync, 0)
    while i < m:
        _input_tiles(i, 0, tiles_H, A_prev, pad_top, pad_left, tiles_W, pv, D, V[i * per * C:])
        _done(sync, 0)
        i = _claim(sync, 0)
    _wait(sync, 0, m)
    k = _claim(sync, 1)
    while k < 16:  # the whole batch's tiles at this position, on this thread's BLAS
        np.dot(V[k * pv:k * pv + T * C].reshape((T, C)), U[k],
               M[k * pm:k * pm + T * K].reshape((T, K)))
        _done(sync, 1)
        k = _claim(sync, 1)
    _wait(sync, 1, 16)
    j = _claim(sync, 2)
    while j < chunks:
        for i in range(j * m // chunks, (j + 1) * m // chunks):
            _output_tiles(i, 0, tiles_H, M[i * per * K:], tiles_W, pm, y, Z, acc[j], epilogue)
        _done(sync, 2)
        j = _claim(sync, 2)


@njit(parallel=True, cache=True)
def convolve_positions_parallel(A_prev, U, pad_top, pad_left, Z, V, M, parts, chunks, acc,
                                epilogue, sync):
    """Z = the 3x3 stride-1 convolution of A_prev with the filter transformed to U (16, C, K),
    the phases above on `parts` threads; V, M the whole batch's transformed tiles (16
    `position_stride` runs of T C and T K values, T = m tiles_H tiles_W); acc (chunks, 3,
    n_W K + 1) each chunk of examples' moments, or (chunks, 3, 0); epilogue as
    kernels/winograd.py's `convolve_blocks`; sync fresh `counters()`."""
    for _ in prange(parts):
        _forward_part(A_prev, U, pad_top, pad_left, Z, V, M, chunks, acc, epilogue, sync)


@njit(inline="always")
def _backward_part(A_prev, dZ, UT, pad_top, pad_left, V, M, dU, dW, dA, input_grad, addend,
                   A, slope, db, zeroed, sync):
    m, n_H, n_W, K = dZ.shape
    C = A_prev.shape[3]
    tiles_H, tiles_W = (n_H + 1) // 2, (n_W + 1) // 2
    per = tiles_H * tiles_W
    T = m * per
    chunks = db.shape[0]
    pv, pm = position_stride(T * C), position_stride(T * K)
    D, y = row_scratch(tiles_W, C, dZ.dtype), out_scratch(tiles_W, K, dZ.dtype)
    j = _claim(sync, 0)
    while j < chunks:  # V and dM, a chunk's bias gradient in its own row
        db[j, :] = 0.0
        for i in range(j * m // chunks, (j + 1) * m // chunks):
            _input_tiles(i, 0, tiles_H, A_prev, pad_top, pad_left, tiles_W, pv, D,
                         V[i * per * C:])
            _output_grad_tiles(i, 0, tiles_H, dZ, tiles_W, pm, y, M[i * per * K:], A, slope,
                               db[j])
        _done(sync, 0)
        j = _claim(sync, 0)
    _wait(sync, 0, chunks)
    k = _claim(sync, 1)
    while k < 16:
        vk = V[k * pv:k * pv + T * C].reshape((T, C))
        mk = M[k * pm:k * pm + T * K].reshape((T, K))
        np.dot(vk.T, mk, dU[0, k])
        if input_grad:  # dV[k] = dM[k] U[k]^T over V[k], spent
            np.dot(mk, UT[k], vk)
        _done(sync, 1)
        k = _claim(sync, 1)
    _wait(sync, 1, 16)
    # dA_prev's chunks (if input_grad), then dW's ranges of 16 channels
    e_all = addend.reshape(-1)
    n_dA = chunks if input_grad else 0
    units = n_dA + (C + 15) // 16
    s, t = np.empty((16, K), dtype=dW.dtype), np.empty((3, 4, K), dtype=dW.dtype)
    u = _claim(sync, 2)
    while u < units:
        if u < n_dA:
            i0, i1 = u * m // chunks, (u + 1) * m // chunks
            e = e_all
            if zeroed:  # rows the windows miss: dA_prev starts as the addend or 0
                if e.shape[0] > 0:
                    dA[i0:i1] = addend[i0:i1]
                    e = e_all[:0]
                else:
                    dA[i0:i1] = 0.0
            for i in range(i0, i1):
                _input_grad_tiles(i, 0, tiles_H, V[i * per * C:], tiles_W, pv, pad_top,
                                  pad_left, D, zeroed, e, dA)
        else:
            c0 = 16 * (u - n_dA)
            filter_grad_channels(dU, dW, c0, min(c0 + 16, C), s, t)
        _done(sync, 2)
        u = _claim(sync, 2)


@njit(parallel=True, cache=True)
def backward_positions_parallel(A_prev, dZ, UT, pad_top, pad_left, V, M, parts, dU, dW, dA,
                                input_grad, addend, A, slope, db, zeroed, sync):
    """dW (3, 3, C, K) and dA (if input_grad) of the conv, the phases above on `parts`
    threads: V, M as `convolve_positions_parallel`'s; dU (1, 16, C, K) scratch (the filter
    gradient in Winograd's domain, left there); UT the transformed filter with each
    position transposed; addend, A, slope as kernels/winograd_grad.py's `backward_blocks`;
    db (chunks, K or 0) each chunk of examples' bias gradient (for a folded activation);
    zeroed: the windows do not cover the input (kernels/winograd_grad.py `covers`)."""
    for _ in prange(parts):
        _backward_part(A_prev, dZ, UT, pad_top, pad_left, V, M, dU, dW, dA, input_grad,
                       addend, A, slope, db, zeroed, sync)


# the kernels' own size rules as plain Python (Numba's py_func): kernels/ahead.py's trace of a
# first step makes every kernel call return 0.0, so a size here cannot come from calling one
_stride = position_stride.py_func
covers = _covers.py_func


# per Python thread (two models trained in threads of one process, as a Dask worker runs
# trials, must not share it): dtype -> one flat array, grown as needed, for every call's V and M
_SCRATCH = threading.local()


def scratch(m: int, n_H: int, n_W: int, C: int, K: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """V and M for the whole batch: 16 runs of T C and of T K values, `position_stride` apart,
    views of one array kept from call to call (a fresh array of a few MB is mapped anew and
    pays its page faults inside the pass: nn/conv_winograd.py `buffer`)."""
    th, tw = -(-n_H // 2), -(-n_W // 2)
    T = m * th * tw
    nv, nm = 16 * _stride(T * C), 16 * _stride(T * K)
    key = np.dtype(dtype).str
    if not hasattr(_SCRATCH, "arrays"):
        _SCRATCH.arrays = {}
    buf = _SCRATCH.arrays.get(key)
    if buf is None or buf.shape[0] < nv + nm:
        buf = _SCRATCH.arrays[key] = np.empty(nv + nm, dtype=dtype)
    return buf[:nv], buf[nv:nv + nm]


def chunks(m: int, parts: int) -> int:
    """Chunks of examples for the transforms' phases: two a thread, so that a thread slowed
    by another process takes fewer."""
    return max(1, min(m, 2 * parts))
