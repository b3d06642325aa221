"""Conv2D's blocked im2col path (kernels/patches.py): im2col + GEMM a few examples at a time.

A conv2d that no other path takes (3+ input channels, not 1x1, not Winograd's 3x3 with 16+
channels, or any stride) unrolls a block of examples at a time into a buffer that stays in
cache, multiplies it at once and, in backward, unrolls it again for dW rather than keeping
the whole batch's patches: the forward keeps only A_prev. Each pass is one parallel region
over runs of examples (BLAS on one thread inside) from PARALLEL_MIN multiply-adds, a serial
loop of the same blocks below it. The layers it took over on the shipped recipes: LeNet-5's
5x5x16, inception_small's 3x3x12 and 5x5x6 branches, mobilenet_v2_small's 3x3 stride-2 stem.

A 2x2 stride-2 max pool right after such a layer (LeNet-5's 5x5x16) runs in its blocks
(`fuse`, as nn/conv_direct.py does for the direct path): the forward writes the pooled output
and each window's argmax, bias and activation applied on the way, and the backward takes the
pool's gradient (LeNet-5 a step, load 2.4-4: batch 64 3.49 -> 3.08 ms, 256 15.2 -> 12.9 ms).
The MaxPool layer stays in the model and passes its already pooled input on. Inside a
training step of small GEMMs (LeNet-5's) the pooled pair's runs of blocks go to the main
thread and kernels/duo.py's helper instead of Numba's threads (`_duo_plan`; measured in
nn/conv_direct.py's docstring).
"""

from __future__ import annotations

import numpy as np

from . import activations

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


def _duo_plan(layer, m, block):
    """(the Duo, runs of blocks) when a pooled pass inside a step of small GEMMs goes to both
    threads (kernels/duo.py), else (None, 1)."""
    from ..kernels.duo import for_pass
    work = m * layer.n_H * layer.n_W * layer.f * layer.f * layer.n_C_prev * layer.n_C
    return for_pass(work, -(-m // block))


def forward(layer, A_prev, Z):
    """Z = the layer's convolution of A_prev, bias and activation not yet applied."""
    from ..kernels import patches as kp
    from ..kernels.threads import run_pass
    m = A_prev.shape[0]
    W2 = layer.params["W"].reshape(-1, layer.n_C)
    Z2 = Z.reshape(-1, layer.n_C)
    block, parts = _plan(layer, m)
    args = (A_prev, W2, layer.f, layer.stride, layer.pad_top, layer.pad_left, layer.n_H,
            layer.n_W, block, Z2)
    run_pass(parts, kp.forward_blocks, kp.forward_blocks_parallel, args, (parts,))
    return Z


def backward(layer, A_prev, dZ):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    from ..kernels import patches as kp
    from ..kernels.threads import run_pass
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
    run_pass(parts, kp.backward_blocks, kp.backward_blocks_parallel, args)
    dW_parts.sum(axis=0, out=dW2)
    return dA_prev if input_grad else None


# A training cache's marker where the patches would be: the pooled output and argmax follow
POOLED = "patches pooled"


def fuse(layer, after) -> bool:
    """Take `after`'s pass into the layer's blocks if it is a 2x2 stride-2 unpadded max pool and
    the layer runs this path with a piecewise activation to an even output size (LeNet-5's
    5x5x16 and its pool)."""
    from .conv import BLOCKED_PATCHES, MaxPool
    if (BLOCKED_PATCHES and isinstance(after, MaxPool) and after.f == 2 and after.stride == 2
            and after.pad_top == 0 and after.pad_left == 0 and not layer.direct
            and not layer.transposed and not layer.winograd and not layer.pointwise
            and layer.n_H % 2 == 0 and layer.n_W % 2 == 0
            and layer.activation in activations.PIECEWISE):
        layer.pool, after.fused = after, True
    return layer.pool is not None


def forward_pooled(layer, A_prev, training):
    """The pooled output g(conv + b) of A_prev (layer.pool's shape), bias, activation and the
    pool run in each block of examples; the training cache for backward_pooled."""
    from ..kernels import patches as kp
    from ..kernels.threads import run_pass
    m = A_prev.shape[0]
    W2 = layer.params["W"].reshape(-1, layer.n_C)
    b = layer.params["b"] if layer.bias else np.zeros(layer.n_C, dtype=A_prev.dtype)
    A = np.empty((m,) + layer.pool.output_shape, dtype=A_prev.dtype)
    argmax = np.empty(A.shape, dtype=np.int8)
    block, parts = _plan(layer, m)
    args = (A_prev, W2, b, activations.CODES[layer.activation], layer.f, layer.stride,
            layer.pad_top, layer.pad_left, layer.n_H, layer.n_W, block, A, argmax)
    duo, runs = _duo_plan(layer, m, block) if parts == 1 else (None, 1)
    if duo is not None:
        duo.run(kp.forward_pooled_blocks_duo, runs, *args)
    else:
        run_pass(parts, kp.forward_pooled_blocks, kp.forward_pooled_blocks_parallel, args, (parts,))
    if training:
        layer.cache = (A_prev, POOLED, A, argmax)
    return A


def backward_pooled(layer, A_prev, dA):
    """dW and db (into layer.grads) and dA_prev (None if the layer needs none) from the
    pooled output's gradient dA and the cache forward_pooled left."""
    from ..kernels import patches as kp
    from ..kernels.threads import run_pass
    A, argmax = layer.cache
    layer.cache = None
    m = A_prev.shape[0]
    W2 = layer.params["W"].reshape(-1, layer.n_C)
    block, parts = _plan(layer, m)
    duo, runs = _duo_plan(layer, m, block) if parts == 1 else (None, 1)
    input_grad = layer.needs_input_grad
    dA_prev = np.empty(A_prev.shape if input_grad else (0, 1, 1, 1), dtype=A.dtype)
    dW_parts = np.empty((max(parts, runs),) + W2.shape, dtype=A.dtype)
    db_parts = np.empty((max(parts, runs), layer.n_C), dtype=A.dtype)
    args = (A_prev, np.ascontiguousarray(dA, dtype=A.dtype), A, argmax,
            activations.CODES[layer.activation], np.ascontiguousarray(W2.T), layer.f,
            layer.stride, layer.pad_top, layer.pad_left, layer.n_H, layer.n_W, block, dW_parts,
            db_parts, dA_prev, input_grad)
    if duo is not None:
        duo.run(kp.backward_pooled_blocks_duo, runs, *args)
    else:
        run_pass(parts, kp.backward_pooled_blocks, kp.backward_pooled_blocks_parallel, args)
    dW_parts.sum(axis=0, out=layer.grads["W"].reshape(W2.shape))
    if layer.bias:
        db_parts.sum(axis=0, out=layer.grads["b"])
    return dA_prev if input_grad else None
