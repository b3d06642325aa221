"""Conv2D's Winograd path (kernels/winograd.py): 3x3 stride-1 convolutions with enough channels.

The forward pass and the input gradient are both Winograd F(2x2, 3x3) convolutions (the
input gradient with the filter rotated), each replacing an im2col GEMM of 2.25x the
multiplies, and the input gradient's col2im pass too. The filter gradient stays a GEMM
over the unrolled input, unrolled in the backward pass a block of rows at a time and summed
while they are in cache (the forward no longer needs the patches). Each of the three runs
as one parallel region (kernels/winograd.py): a run of blocks a thread, every GEMM on the
thread that made its operands, BLAS held to one thread meanwhile.

`Conv2D.build` takes this path when WINOGRAD_MIN_CHANNELS holds; the tests lower it to 1 so
that the whole conv grid runs through it against PyTorch.
"""

from __future__ import annotations

import numpy as np

# Both channel counts at least this many. Measured forward / backward ms, relu, float32, on
# one thread (CPU time, the machine at load 1.7-2.8), im2col + GEMM against Winograd blocks:
# 64x32x32x32 -> 32: 23.9 / 49.5 against 15.7 / 41.8; 8x96x128x16 -> 16 (the U-Net's top):
# 20.4 / 28.4 against 12.2 / 29.8; 8x96x128x32 -> 16: 36.9 / 55.6 against 15.1 / 44.2;
# 64x16x16x16 -> 16: 2.0 / 3.7 against 2.2 / 3.3; but from 8 channels to 12 on 64x16x16:
# 1.2 / 1.8 against 1.5 / 2.5. On 2 threads while others ran, the 2-thread BLAS GEMMs of
# im2col collapsed (64x32x32x32: 404 / 324 ms) where these blocks, a thread each with one
# BLAS thread, held (21 / 64 ms).
WINOGRAD_MIN_CHANNELS = 16


# Unrolled values a block of the filter gradient holds (256 KB of float32): whole output rows
# of one example. Measured dW on one thread (CPU time, load ~2), blocks of 1<<16 / 1<<18 /
# 1<<20 values: 64x32x32x32 -> 32 25.0 / 26.5 / 26.9 ms; 8x96x128x16 -> 16 8.8 / 17.2 /
# 18.8; 8x96x128x32 -> 16 14.5 / 27.6 / 29.6 (batch-wide im2col and one GEMM: 31.5, 20.1,
# 33.9).
FILTER_GRAD_CHUNK = 1 << 16


def applies(f: int, stride: int, n_C_prev: int, n_C: int) -> bool:
    return f == 3 and stride == 1 and min(n_C_prev, n_C) >= WINOGRAD_MIN_CHANNELS


def _transformed(W, rotate=False):
    from ..kernels import winograd as kw
    W = kw.rotated(W) if rotate else W
    U = np.empty((16, W.shape[2], W.shape[3]), dtype=W.dtype)
    kw.filter_transform(W, U)
    return U


def forward(layer, A_prev, Z, chunk_elements=None):
    """Z = the layer's convolution of A_prev, bias and activation not yet applied (in blocks
    of kernels/winograd.py's size, whatever `chunk_elements` the caller's im2col uses)."""
    from ..kernels import winograd as kw
    return kw.convolve(A_prev, _transformed(layer.params["W"]), layer.pad_top, layer.pad_left, Z)


def backward(layer, A_prev, dZ, chunk_elements):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    from ..kernels import winograd as kw
    m, n_H, n_W, K = dZ.shape
    width = 9 * layer.n_C_prev
    rows = max(1, min(n_H, FILTER_GRAD_CHUNK // (n_W * width)))
    blocks = m * -(-n_H // rows)
    dW2 = layer.grads["W"].reshape(width, K)
    if dZ.size * width < kw.PARALLEL_MIN:
        kw.filter_grad(A_prev, dZ, layer.pad_top, layer.pad_left, rows, dW2[None])
    else:
        dW_parts = np.empty((kw.parts(blocks), width, K), dtype=dZ.dtype)
        with kw.one_blas_thread():
            kw.filter_grad_parallel(A_prev, dZ, layer.pad_top, layer.pad_left, rows, dW_parts)
        dW_parts.sum(axis=0, out=dW2)
    if not layer.needs_input_grad:
        return None
    dA_prev = np.empty(A_prev.shape, dtype=dZ.dtype)
    # dA_prev[r] = sum_di dZ[r + di - (2 - pad)] W[2 - di]: the rotated filter, padded by 2 - pad
    return kw.convolve(dZ, _transformed(layer.params["W"], rotate=True), 2 - layer.pad_top,
                       2 - layer.pad_left, dA_prev)
