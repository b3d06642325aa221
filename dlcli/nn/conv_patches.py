"""Conv2D's blocked im2col path (kernels/patches.py): im2col + GEMM a few examples at a time.

A conv2d that no other path takes (3+ input channels, not 1x1, not Winograd's 3x3 with 16+
channels, or any stride) unrolls a block of examples at a time into a buffer that stays in
cache, multiplies it at once and, in backward, unrolls it again for dW rather than keeping
the whole batch's patches: the forward keeps only A_prev. Each pass is one parallel region
over runs of examples (BLAS on one thread inside) from PARALLEL_MIN multiply-adds, a serial
loop of the same blocks below it. The layers it took over on the shipped recipes: LeNet-5's
5x5x16, inception_small's 3x3x12 and 5x5x6 branches, mobilenet_v2_small's 3x3 stride-2 stem.
"""

from __future__ import annotations

import numpy as np

# Multiply-adds of a pass from which the runs go to Numba's threads. Below it the blocks run
# serially, BLAS on its own threads: whole steps (Dec 3 2026, 09:48-09:51 UTC, load 1.8-4.2,
# interleaved) LeNet-5 at batch 64 4.89 ms serial against 5.44 parallel (6.31 batch-wide),
# at 256 14.3 against 15.7 (15.6), inception_small 19.0 against 20.1 (21.4).
PARALLEL_MIN = 1 << 26


def _plan(layer, m):
    """(block, parts): examples a block, runs of examples (1: the serial driver)."""
    from ..kernels import patches as kp
    hw, width = layer.n_H * layer.n_W, layer.f * layer.f * layer.n_C_prev
    block = max(1, min(m, kp.BLOCK_COLS // (hw * width)))
    if m * hw * width * layer.n_C < PARALLEL_MIN:
        return block, 1
    from numba import get_num_threads
    return block, max(1, min(get_num_threads(), -(-m // block)))


def forward(layer, A_prev, Z):
    """Z = the layer's convolution of A_prev, bias and activation not yet applied."""
    from ..kernels import patches as kp
    m = A_prev.shape[0]
    W2 = layer.params["W"].reshape(-1, layer.n_C)
    Z2 = Z.reshape(-1, layer.n_C)
    block, parts = _plan(layer, m)
    args = (A_prev, W2, layer.f, layer.stride, layer.pad_top, layer.pad_left, layer.n_H,
            layer.n_W, block, Z2)
    if parts == 1:
        kp.forward_blocks(*args)
    else:
        from ..kernels.winograd import one_blas_thread
        with one_blas_thread():
            kp.forward_blocks_parallel(*args, parts)
    return Z


def backward(layer, A_prev, dZ):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    from ..kernels import patches as kp
    m = A_prev.shape[0]
    W2 = layer.params["W"].reshape(-1, layer.n_C)
    block, parts = _plan(layer, m)
    input_grad = layer.needs_input_grad
    dA_prev = np.empty(A_prev.shape if input_grad else (0, 1, 1, 1), dtype=dZ.dtype)
    dW2 = layer.grads["W"].reshape(W2.shape)
    dW_parts = np.empty((parts,) + W2.shape, dtype=dZ.dtype)
    args = (A_prev, dZ.reshape(-1, layer.n_C), np.ascontiguousarray(W2.T), layer.f, layer.stride,
            layer.pad_top, layer.pad_left, layer.n_H, layer.n_W, block, dW_parts, dA_prev,
            input_grad)
    if parts == 1:
        kp.backward_blocks(*args)
        dW2[...] = dW_parts[0]
    else:
        from ..kernels.winograd import one_blas_thread
        with one_blas_thread():
            kp.backward_blocks_parallel(*args)
        dW_parts.sum(axis=0, out=dW2)
    return dA_prev if input_grad else None
