"""conv2d_transpose, NHWC: GEMM + scatter (forward) and gather + GEMMs (backward) in blocks of
input rows that stay in a core's cache, one parallel region a pass.

A transpose convolution scatters each input pixel's channels through its filter:
Z[i, h s + di - crop, w s + dj - crop, :] += A_prev[i, h, w, :] @ W[di, dj]. As GEMMs:

    forward    cols = A_prev (pixels, C) @ W_rows (C, f f K), then each row of cols added
               into Z at its f x f window (col2im's scatter)
    backward   cols = dZ's f x f window of each input pixel (im2col's gather, stride s),
               dA_prev = cols @ W_rows^T, dW_rows = A_prev^T @ cols

Why blocks: the batch-wide version (one GEMM into an (m n_H n_W, f f K) buffer, then col2im
over it) wrote and read back a buffer 2.25x the size of Z (14 MB for the U-Net's 32 -> 16 at
8x48x64), and made its GEMMs on 2 BLAS threads or split them between Numba's threads in
separate regions from the scatter. Here a block of a few input rows (BLOCK_VALUES values of
cols, 256 KB of float32) is multiplied and scattered, or gathered and multiplied, while it is
in L2, and the whole pass is one parallel region: a run of whole examples a Numba thread (two
rows of one example write the same output row, two examples never do), BLAS on one thread
meanwhile (kernels/threads.py `one_blas_thread`), the filter gradient summed per run and the
runs added after the region. Z's rows are zeroed just before a block first adds into them,
so that pass too runs in cache.

The forward starts each output row at the bias (not at 0), so a linear transpose needs no
bias pass; it writes channels k0:k0 + K of an output with ld channels a pixel, and the
backward reads its dZ there and sums db in the same region: a skip_concat writes a linear
transpose (the U-Net's up-sampling) straight into its concatenation and hands it its part of
the concatenation's gradient (detect/layers.py), where Z was copied in and dZ copied out.
Whole U-Net steps, both alternating in one process (Dec 3 2026, 15:25 UTC, load ~7, CPU time
as the wall time meant nothing): 376.9 -> 374.5 ms, the passes gone being small ones.

The backward's gather + dW pass is also any conv's filter gradient (the gather of a transpose
conv's backward is a conv's im2col); nn/conv_split.py ran it at stride 1 until the nine
shifted GEMMs of kernels/filter_grad.py, which copy nothing, measured faster.

Measured (Dec 3 2026, 12:25-12:27 UTC, load 1.5-1.8, forward + backward on 2 threads, median
of 15 interleaved, batch 8, two runs each): the U-Net's four 3x3 stride-2 transposes,
48x64x32 -> 16 18.9 / 20.1 ms with the previous version (kernels/gemm.py's row-split GEMMs
around col2im / im2col) against 13.7 / 13.4 here; 24x32x64 -> 32 14.7 / 14.8 against 10.8 /
10.6; 12x16x128 -> 64 10.6 / 9.4 against 11.0 / 11.3; 6x8x256 -> 128 9.5 / 10.8 against
8.8 / 11.9; all four 53.7 / 55.0 against 44.3 / 47.2.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

# A block's input pixels: at least MIN_PIXELS (fewer, and BLAS repacks W_rows, large at the deep
# levels, for too small a product), else about BLOCK_VALUES values of cols. One thread, min of
# 9 (Dec 3 2026, load ~2.5), forward / backward ms at batch 8 by block size: 48x64x32 -> 16
# 3.8 / 5.7 at 128 pixels, 3.6-3.8 / 7.3-8.1 at 256-4096; 6x8x256 -> 128 6.7 / 11.8 at 8,
# 2.7 / 6.0-6.2 at 64-256; 12x16x128 -> 64 4.5 / 8.4 at 16, 2.4-2.9 / 5.3-5.6 at 128-1024.
MIN_PIXELS = 128
BLOCK_VALUES = 1 << 14
# And at least one pixel per W_VALUES_A_PIXEL values of W_rows (C x f f K), which BLAS packs
# for every block's GEMM: the U-Net's deepest transpose, 8x6x8x256 -> 128 (W_rows 1.2 MB),
# took 16-row blocks (2 a run of 4 examples) at 128 pixels, whole runs at 384: forward /
# backward 1.88 / 4.33 -> 1.61 / 3.86 ms (2 threads, median of 28 alternating, load ~2.3,
# Dec 4 2026); 12x16x128 -> 64 flat (1.67 / 3.37 against 1.61 / 3.31 at 384); 48x64x32 -> 16
# slower at 384 pixels (3.04 / 3.34 against 3.36 / 4.82), and there W_rows asks for none.
W_VALUES_A_PIXEL = 768


def block_rows(n_W_prev: int, width: int, n_C_prev: int = 0) -> int:
    """Input rows a block: MIN_PIXELS pixels at least, and one per W_VALUES_A_PIXEL values of
    W_rows (n_C_prev x width), else BLOCK_VALUES values of cols."""
    pixels = max(MIN_PIXELS, BLOCK_VALUES // width, n_C_prev * width // W_VALUES_A_PIXEL)
    return max(1, -(-pixels // n_W_prev))


@njit(inline="always")
def _rows(x, r0, r1):
    """Rows r0:r1 of the C-contiguous 2-D x, typed contiguous (numba's np.dot wants that)."""
    k = x.shape[1]
    return x.reshape(-1)[r0 * k:r1 * k].reshape((r1 - r0, k))


@njit(inline="always")
def _fill_rows(Z, i, r0, r1, b, k0):
    """Z[i, r0:r1, :, k0:k0 + len(b)] = b: output rows before any input adds into them."""
    for r in range(r0, r1):
        for c in range(Z.shape[2]):
            for k in range(b.shape[0]):
                Z[i, r, c, k0 + k] = b[k]


@njit(inline="always")
def _forward_run(p, parts, A2, W_rows, f, stride, crop, n_H_prev, n_W_prev, block_rows, Z, b, k0):
    m, n_H, n_W, ld = Z.shape
    K = b.shape[0]
    i0, i1 = p * m // parts, (p + 1) * m // parts
    width = W_rows.shape[1]
    cols = np.empty((block_rows * n_W_prev, width), dtype=Z.dtype)
    src, dst = cols.reshape(-1), Z.reshape(-1)
    current, filled = -1, 0  # the example being scattered, its output rows set to b so far
    for g0 in range(i0 * n_H_prev, i1 * n_H_prev, block_rows):  # g: example i's input row h
        g1 = min(g0 + block_rows, i1 * n_H_prev)
        np.dot(_rows(A2, g0 * n_W_prev, g1 * n_W_prev), W_rows, _rows(cols, 0, (g1 - g0) * n_W_prev))
        for g in range(g0, g1):
            i, h = g // n_H_prev, g % n_H_prev
            if i != current:
                if current >= 0:
                    _fill_rows(Z, current, filled, n_H, b, k0)  # rows no input reached
                current, filled = i, 0
            reach = min(n_H, h * stride + f - crop)  # rows go down as h does: those past
            if reach > filled:                       # `filled` are met here for the first time
                _fill_rows(Z, i, filled, reach, b, k0)
                filled = reach
            for di in range(f):
                r = h * stride + di - crop
                if r < 0 or r >= n_H:
                    continue
                for w in range(n_W_prev):
                    s0 = uint64((((g - g0) * n_W_prev + w) * f + di) * f * K)
                    for dj in range(f):
                        c = w * stride + dj - crop
                        if c < 0 or c >= n_W:
                            continue
                        d0 = uint64(((i * n_H + r) * n_W + c) * ld + k0)
                        s1 = s0 + uint64(dj * K)
                        for k in range(K):
                            dst[d0 + uint64(k)] += src[s1 + uint64(k)]
    if current >= 0:
        _fill_rows(Z, current, filled, n_H, b, k0)


@njit(cache=True)
def forward_blocks(A2, W_rows, f, stride, crop, n_H_prev, n_W_prev, block_rows, Z, b, k0):
    """Z[..., k0:k0 + K] (Z (m, n_H, n_W, ld), the rest of each pixel untouched), overwritten =
    b + the transpose convolution of A2 (m n_H_prev n_W_prev, C) by W_rows (C, f f K,
    columns (di, dj, k)), cropped by `crop` at the top and left."""
    _forward_run(0, 1, A2, W_rows, f, stride, crop, n_H_prev, n_W_prev, block_rows, Z, b, k0)


@njit(parallel=True, cache=True)
def forward_blocks_parallel(A2, W_rows, f, stride, crop, n_H_prev, n_W_prev, block_rows, Z, b, k0,
                            parts):
    for p in prange(parts):
        _forward_run(p, parts, A2, W_rows, f, stride, crop, n_H_prev, n_W_prev, block_rows, Z, b, k0)


@njit(inline="always")
def _backward_run(p, parts, dZ, A2, W_rowsT, f, stride, crop, n_H_prev, n_W_prev, block_rows,
                  dW_part, dA2, input_grad, k0, db_part):
    m, n_H, n_W, ld = dZ.shape
    K = dW_part.shape[1] // (f * f)
    i0, i1 = p * m // parts, (p + 1) * m // parts
    width = f * f * K
    cols = np.empty((block_rows * n_W_prev, width), dtype=dZ.dtype)
    dW_block = np.empty(dW_part.shape, dtype=dZ.dtype)
    dW_part[:] = 0.0
    src, dst = dZ.reshape(-1), cols.reshape(-1)
    if db_part.shape[0] > 0:  # the bias gradient: the run's sums of dZ[..., k0:k0 + K]
        db_part[:] = 0.0
        for q in range(i0 * n_H * n_W, i1 * n_H * n_W):
            q0 = uint64(q * ld + k0)
            for k in range(K):
                db_part[k] += src[q0 + uint64(k)]
    run = uint64(f * K)
    for g0 in range(i0 * n_H_prev, i1 * n_H_prev, block_rows):
        g1 = min(g0 + block_rows, i1 * n_H_prev)
        for g in range(g0, g1):
            i, h = g // n_H_prev, g % n_H_prev
            for w in range(n_W_prev):
                c0 = w * stride - crop
                whole = c0 >= 0 and c0 + f <= n_W and ld == K
                for di in range(f):
                    d0 = uint64((((g - g0) * n_W_prev + w) * f + di) * f * K)
                    r = h * stride + di - crop
                    if r < 0 or r >= n_H:
                        for j in range(run):
                            dst[d0 + uint64(j)] = 0.0
                        continue
                    if whole:  # the window's row is f K contiguous values of dZ
                        s0 = uint64(((i * n_H + r) * n_W + c0) * K)
                        for j in range(run):
                            dst[d0 + uint64(j)] = src[s0 + uint64(j)]
                        continue
                    for dj in range(f):
                        c = c0 + dj
                        d1 = d0 + uint64(dj * K)
                        if c < 0 or c >= n_W:
                            for k in range(K):
                                dst[d1 + uint64(k)] = 0.0
                        else:
                            s0 = uint64(((i * n_H + r) * n_W + c) * ld + k0)
                            for k in range(K):
                                dst[d1 + uint64(k)] = src[s0 + uint64(k)]
        part = _rows(cols, 0, (g1 - g0) * n_W_prev)
        np.dot(_rows(A2, g0 * n_W_prev, g1 * n_W_prev).T, part, dW_block)
        dW_part += dW_block
        if input_grad:
            np.dot(part, W_rowsT, _rows(dA2, g0 * n_W_prev, g1 * n_W_prev))


@njit(cache=True)
def backward_blocks(dZ, A2, W_rowsT, f, stride, crop, n_H_prev, n_W_prev, block_rows, dW_parts, dA2,
                    input_grad, k0, db_parts):
    """dW_parts[0] (C, f f K) = A2^T @ gather(dZ), dA2 (m n_H_prev n_W_prev, C) = gather(dZ) @
    W_rowsT: forward_blocks' adjoints, dZ's channels k0:k0 + K of its ld; db_parts[0] (K, or
    none: shape (1, 0)) = dZ's sums."""
    _backward_run(0, 1, dZ, A2, W_rowsT, f, stride, crop, n_H_prev, n_W_prev, block_rows,
                  dW_parts[0], dA2, input_grad, k0, db_parts[0])


@njit(parallel=True, cache=True)
def backward_blocks_parallel(dZ, A2, W_rowsT, f, stride, crop, n_H_prev, n_W_prev, block_rows,
                             dW_parts, dA2, input_grad, k0, db_parts):
    """backward_blocks over len(dW_parts) runs of examples, dW_parts[p] (and db_parts[p]) the
    run p's sum."""
    parts = dW_parts.shape[0]
    for p in prange(parts):
        _backward_run(p, parts, dZ, A2, W_rowsT, f, stride, crop, n_H_prev, n_W_prev, block_rows,
                      dW_parts[p], dA2, input_grad, k0, db_parts[p])
