"""im2col + GEMM convolution in blocks of a few examples, each block unrolled, multiplied and
(backward) folded while its patches are still in the core's cache, NHWC.

Why: the batch-wide unrolling (nn/conv.py) writes every patch of the batch in forward and
keeps them for backward: LeNet-5's 5x5x16 on 14x14x6 at batch 256 holds 15 MB of patches,
far past a core's 2 MB L2, and its backward (dW = cols^T dZ over all of them, then dcols and
col2im) took 9.4 ms on one thread against 1.1 ms at batch 64. Here the patches of a block
(BLOCK_COLS values, a few examples) are unrolled into a buffer of the thread's own, used at
once and overwritten by the next block; backward unrolls them again (a copy of ~60 KB an
example, cheaper than reading them back from memory) for dW, then writes dcols over them and
folds them into dA_prev.

How it runs: one region a pass. The examples are split into `parts` contiguous runs, one a
Numba thread (`prange`), each run in blocks; the GEMMs are np.dot on the thread that needs
them, BLAS held to one thread meanwhile (kernels/threads.py `one_blas_thread`), so the two
threads meet once, at the end of the region, instead of at every 2-thread GEMM. The filter
gradient is summed per run (dW_parts) and the runs added after the region, so no two threads
write one cell. With one part (small layers) the same code runs serially. Inside a training
step of small GEMMs the pooled pair's runs go instead to the main thread and kernels/duo.py's
helper, taken from a shared counter (`_duo` drivers: LeNet-5's 5x5x16).

The unrolling and folding are kernels/conv.py's `_im2col` / `_col2im` bodies (column order
(di, dj, c), W.reshape(f f n_C_prev, n_C)), so the numbers are the batch-wide path's.

A 2x2 stride-2 max pool after the layer (LeNet-5's second) runs in the blocks too
(`forward_pooled_blocks`): each block's GEMM goes to a block-sized buffer, and the bias, a
piecewise activation and the pool are taken from it while it is in cache, writing the
pooled output and each window's cell (as kernels/direct.py's pooled kernels do); backward
builds each block's dZ from the pool's gradient just before that block's GEMMs. Gone: the
activation's pass over Z and its backward's over dA, the pool's two passes, and the
unpooled Z and its gradient as whole-batch arrays. Measured (Dec 3 2026, whole LeNet-5 steps
in one process, fused and apart alternating by epoch, 12 epochs, load 2.4-4.0): batch 64
3.49 -> 3.08 ms a step (main thread's CPU 3.55 -> 3.24 ms), batch 256 15.2 -> 12.9 ms
(15.3 -> 13.1 ms).

Measured (Dec 3 2026, 2-core Zen 4, float32, relu, forward + backward CPU time on one thread,
load ~2.6, against the batch-wide path): LeNet-5's 5x5x16 on 14x14x6 at batch 64 2.98 ->
2.33 ms, at 256 14.8 -> 9.4 ms; inception_small's 3x3x12 on 16x16x8 4.1 -> 2.9 ms and 5x5x6
on 16x16x4 6.5 -> 4.8 ms (batch 64). Blocks of 1 << 14 .. 1 << 16 values measured alike,
1 << 17 .. 1 << 19 up to 40% slower (out of L2 with the GEMM's packed operands).
Tried and not kept: keeping the forward's patches for backward up to 4-16 MB instead of
unrolling again (whole steps within noise: LeNet-5 at 64 2.96 against 3.03 ms, inception
16.7 against 16.9); BLAS held to one thread in the serial driver (no difference on
mobilenet_v2_small, 22.2 against 22.3 ms).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .conv import _col2im, _im2col
from .activations import _slope
from .direct import _act
from .duo import finish, go, next_part, part_done

BLOCK_COLS = 1 << 16  # patch values a block holds (256 KB of float32): 4 of LeNet's examples


@njit(inline="always")
def _rows(x, r0, r1):
    """Rows r0:r1 of the C-contiguous 2-D x, typed contiguous (numba's np.dot wants that)."""
    k = x.shape[1]
    return x.reshape(-1)[r0 * k:r1 * k].reshape((r1 - r0, k))


@njit(inline="always")
def _forward_run(p, parts, A_prev, W2, f, stride, pad_top, pad_left, n_H, n_W, block, Z2):
    m, hw = A_prev.shape[0], n_H * n_W
    i0, i1 = p * m // parts, (p + 1) * m // parts
    cols = np.empty((block * hw, W2.shape[0]), dtype=Z2.dtype)
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        part, sub = _rows(cols, 0, (b1 - b0) * hw), A_prev[b0:b1]
        for i in range(b1 - b0):
            _im2col(i, sub, f, stride, pad_top, pad_left, n_H, n_W, part)
        np.dot(part, W2, _rows(Z2, b0 * hw, b1 * hw))


@njit(cache=True)
def forward_blocks(A_prev, W2, f, stride, pad_top, pad_left, n_H, n_W, block, Z2):
    """Z2 (m n_H n_W, n_C) = im2col(A_prev) @ W2, `block` examples at a time."""
    _forward_run(0, 1, A_prev, W2, f, stride, pad_top, pad_left, n_H, n_W, block, Z2)


@njit(parallel=True, cache=True)
def forward_blocks_parallel(A_prev, W2, f, stride, pad_top, pad_left, n_H, n_W, block, Z2, parts):
    for p in prange(parts):
        _forward_run(p, parts, A_prev, W2, f, stride, pad_top, pad_left, n_H, n_W, block, Z2)


@njit(inline="always")
def _backward_run(p, parts, A_prev, dZ2, W2T, f, stride, pad_top, pad_left, n_H, n_W, block,
                  dW_part, dA_prev, input_grad):
    m, hw = A_prev.shape[0], n_H * n_W
    i0, i1 = p * m // parts, (p + 1) * m // parts
    cols = np.empty((block * hw, W2T.shape[1]), dtype=dZ2.dtype)
    dW_block = np.empty(dW_part.shape, dtype=dZ2.dtype)
    dW_part[:] = 0.0
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        part, sub = _rows(cols, 0, (b1 - b0) * hw), A_prev[b0:b1]
        for i in range(b1 - b0):
            _im2col(i, sub, f, stride, pad_top, pad_left, n_H, n_W, part)
        dZ_block = _rows(dZ2, b0 * hw, b1 * hw)
        np.dot(part.T, dZ_block, dW_block)
        dW_part += dW_block
        if input_grad:  # the patches are spent: their gradient goes over them
            np.dot(dZ_block, W2T, part)
            dA_sub = dA_prev[b0:b1]
            for i in range(b1 - b0):
                _col2im(i, part, f, stride, pad_top, pad_left, n_H, n_W, dA_sub)


@njit(cache=True)
def backward_blocks(A_prev, dZ2, W2T, f, stride, pad_top, pad_left, n_H, n_W, block, dW_parts,
                    dA_prev, input_grad):
    """dW_parts[0] = im2col(A_prev)^T dZ2 and, if input_grad, dA_prev (overwritten) =
    col2im(dZ2 W2T), `block` examples at a time."""
    _backward_run(0, 1, A_prev, dZ2, W2T, f, stride, pad_top, pad_left, n_H, n_W, block,
                  dW_parts[0], dA_prev, input_grad)


@njit(parallel=True, cache=True)
def backward_blocks_parallel(A_prev, dZ2, W2T, f, stride, pad_top, pad_left, n_H, n_W, block,
                             dW_parts, dA_prev, input_grad):
    """backward_blocks over len(dW_parts) runs of examples, dW_parts[p] the run p's sum."""
    parts = dW_parts.shape[0]
    for p in prange(parts):
        _backward_run(p, parts, A_prev, dZ2, W2T, f, stride, pad_top, pad_left, n_H, n_W, block,
                      dW_parts[p], dA_prev, input_grad)


# -- a 2x2 stride-2 max pool after the layer, run in its blocks (nn/conv_patches.py `fuse`) ---------
@njit(inline="always")
def _pool_block(b0, Zb, bias, code, n_H, n_W, A, argmax):
    """A[b0 + i], argmax[b0 + i] for the block's examples i = the 2x2 stride-2 max pool of
    g(Zb + bias) and the window cell each maximum came from (dy 2 + dx, the first on ties, as
    kernels/pool.py scans and kernels/direct.py numbers them; the maximum taken before the
    monotone g, as there). Zb holds the block's outputs,
    n_H n_W rows an example, n_C contiguous values a row: the channel loop is innermost and
    reads and writes in order, so it vectorizes."""
    n_C = Zb.shape[1]
    h2, w2 = n_H // 2, n_W // 2
    z, out, where = Zb.reshape(-1), A.reshape(-1), argmax.reshape(-1)
    slope = _slope(code, Zb)
    right, down = uint64(n_C), uint64(n_W * n_C)
    for i in range(Zb.shape[0] // (n_H * n_W)):
        for h in range(h2):
            for w in range(w2):
                r = uint64(((i * n_H + 2 * h) * n_W + 2 * w) * n_C)
                d = uint64((((b0 + i) * h2 + h) * w2 + w) * n_C)
                for k in range(n_C):
                    u, bk = uint64(k), bias[k]
                    top = z[r + u] + bk
                    v1 = z[r + right + u] + bk
                    v2 = z[r + down + u] + bk
                    v3 = z[r + down + right + u] + bk
                    p = np.int8(1) if v1 > top else np.int8(0)
                    top = v1 if v1 > top else top
                    p = np.int8(2) if v2 > top else p
                    top = v2 if v2 > top else top
                    p = np.int8(3) if v3 > top else p
                    out[d + u] = _act(v3 if v3 > top else top, slope)
                    where[d + u] = p


@njit(inline="always")
def _unpool_block(b0, dA, A, argmax, code, n_H, n_W, dZb, db):
    """dZb = the block's dZ (n_H n_W rows an example) from the pooled gradient dA: each value,
    times g'(z) read off the pooled output A, goes to the cell its window's maximum came
    from, the other three get 0, as MaxPool's backward then the activation's would give;
    db += its sums."""
    n_C = dZb.shape[1]
    h2, w2 = n_H // 2, n_W // 2
    dZb[:] = 0.0
    dz, da, a, where = dZb.reshape(-1), dA.reshape(-1), A.reshape(-1), argmax.reshape(-1)
    slope = _slope(code, dZb)
    for i in range(dZb.shape[0] // (n_H * n_W)):
        for h in range(h2):
            for w in range(w2):
                r = ((i * n_H + 2 * h) * n_W + 2 * w) * n_C
                d = uint64((((b0 + i) * h2 + h) * w2 + w) * n_C)
                for k in range(n_C):
                    u = d + uint64(k)
                    g = da[u] if a[u] > 0 else da[u] * slope
                    q = where[u]
                    dz[uint64(r + ((q >> 1) * n_W + (q & 1)) * n_C + k)] = g
                    db[k] += g


@njit(inline="always")
def _forward_pooled_run(p, parts, A_prev, W2, bias, code, f, stride, pad_top, pad_left, n_H, n_W,
                        block, A, argmax):
    m, hw = A_prev.shape[0], n_H * n_W
    i0, i1 = p * m // parts, (p + 1) * m // parts
    cols = np.empty((block * hw, W2.shape[0]), dtype=A.dtype)
    Z = np.empty((block * hw, W2.shape[1]), dtype=A.dtype)
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        part, sub, Zb = _rows(cols, 0, (b1 - b0) * hw), A_prev[b0:b1], _rows(Z, 0, (b1 - b0) * hw)
        for i in range(b1 - b0):
            _im2col(i, sub, f, stride, pad_top, pad_left, n_H, n_W, part)
        np.dot(part, W2, Zb)
        _pool_block(b0, Zb, bias, code, n_H, n_W, A, argmax)


@njit(cache=True, error_model="numpy")
def forward_pooled_blocks(A_prev, W2, bias, code, f, stride, pad_top, pad_left, n_H, n_W, block,
                          A, argmax):
    """A (m, n_H / 2, n_W / 2, n_C), argmax (int8, A's shape) = the 2x2 stride-2 max pool of
    g(im2col(A_prev) @ W2 + bias) and its cells, `block` examples at a time: the unpooled
    output is never written but to a block's buffer."""
    _forward_pooled_run(0, 1, A_prev, W2, bias, code, f, stride, pad_top, pad_left, n_H, n_W,
                        block, A, argmax)


@njit(parallel=True, cache=True, error_model="numpy")
def forward_pooled_blocks_parallel(A_prev, W2, bias, code, f, stride, pad_top, pad_left, n_H, n_W,
                                   block, A, argmax, parts):
    for p in prange(parts):
        _forward_pooled_run(p, parts, A_prev, W2, bias, code, f, stride, pad_top, pad_left, n_H,
                            n_W, block, A, argmax)


@njit(inline="always")
def _backward_pooled_run(p, parts, A_prev, dA, A, argmax, code, W2T, f, stride, pad_top, pad_left,
                         n_H, n_W, block, dW_part, db_part, dA_prev, input_grad):
    m, hw = A_prev.shape[0], n_H * n_W
    i0, i1 = p * m // parts, (p + 1) * m // parts
    cols = np.empty((block * hw, W2T.shape[1]), dtype=dW_part.dtype)
    dZ = np.empty((block * hw, W2T.shape[0]), dtype=dW_part.dtype)
    dW_block = np.empty(dW_part.shape, dtype=dW_part.dtype)
    dW_part[:] = 0.0
    db_part[:] = 0.0
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        part, sub, dZ_block = _rows(cols, 0, (b1 - b0) * hw), A_prev[b0:b1], _rows(dZ, 0, (b1 - b0) * hw)
        _unpool_block(b0, dA, A, argmax, code, n_H, n_W, dZ_block, db_part)
        for i in range(b1 - b0):
            _im2col(i, sub, f, stride, pad_top, pad_left, n_H, n_W, part)
        np.dot(part.T, dZ_block, dW_block)
        dW_part += dW_block
        if input_grad:
            np.dot(dZ_block, W2T, part)
            dA_sub = dA_prev[b0:b1]
            for i in range(b1 - b0):
                _col2im(i, part, f, stride, pad_top, pad_left, n_H, n_W, dA_sub)


@njit(cache=True, error_model="numpy")
def backward_pooled_blocks(A_prev, dA, A, argmax, code, W2T, f, stride, pad_top, pad_left, n_H, n_W,
                           block, dW_parts, db_parts, dA_prev, input_grad):
    """backward_blocks behind forward_pooled_blocks, from the pooled output's gradient dA, the
    pooled output A and its argmax: dW_parts[0], db_parts[0] and, if input_grad, dA_prev
    (overwritten); each block's dZ is built in a buffer of its own just before its GEMMs."""
    _backward_pooled_run(0, 1, A_prev, dA, A, argmax, code, W2T, f, stride, pad_top, pad_left,
                         n_H, n_W, block, dW_parts[0], db_parts[0], dA_prev, input_grad)


@njit(parallel=True, cache=True, error_model="numpy")
def backward_pooled_blocks_parallel(A_prev, dA, A, argmax, code, W2T, f, stride, pad_top, pad_left,
                                    n_H, n_W, block, dW_parts, db_parts, dA_prev, input_grad):
    parts = dW_parts.shape[0]
    for p in prange(parts):
        _backward_pooled_run(p, parts, A_prev, dA, A, argmax, code, W2T, f, stride, pad_top,
                             pad_left, n_H, n_W, block, dW_parts[p], db_parts[p], dA_prev,
                             input_grad)


@njit(cache=True, nogil=True, error_model="numpy")
def forward_pooled_blocks_duo(ctrl, gen, counter, parts, A_prev, W2, bias, code, f, stride,
                              pad_top, pad_left, n_H, n_W, block, A, argmax):
    """forward_pooled_blocks in `parts` runs of examples taken by both threads (kernels/duo.py)."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        _forward_pooled_run(p, parts, A_prev, W2, bias, code, f, stride, pad_top, pad_left, n_H,
                            n_W, block, A, argmax)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)


@njit(cache=True, nogil=True, error_model="numpy")
def backward_pooled_blocks_duo(ctrl, gen, counter, parts, A_prev, dA, A, argmax, code, W2T, f,
                               stride, pad_top, pad_left, n_H, n_W, block, dW_parts, db_parts,
                               dA_prev, input_grad):
    """backward_pooled_blocks in `parts` runs taken by both threads; each run's dW and db
    partials in dW_parts[p], db_parts[p], added in run order by the caller."""
    go(ctrl, gen)
    p, own = next_part(counter), 0
    while p < parts:
        _backward_pooled_run(p, parts, A_prev, dA, A, argmax, code, W2T, f, stride, pad_top,
                             pad_left, n_H, n_W, block, dW_parts[p], db_parts[p], dA_prev,
                             input_grad)
        part_done(counter)
        p, own = next_part(counter), own + 1
    finish(ctrl, gen, counter, parts, own)
