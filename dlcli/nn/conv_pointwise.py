"""Conv2D's pointwise path: a 1x1 stride-1 convolution without padding is one GEMM as it is.

Its patches are the input itself, so im2col would only copy A_prev into a buffer of the same
layout, and col2im copy the input gradient back: A_prev (m n_H n_W, n_C_prev) @ W (n_C_prev,
n_C) forward, dW = A_prev^T dZ and dA_prev = dZ W^T backward, with no copy at all.
Measured on mobilenet_v2_small's 1x1 expansion (16 -> 64 channels on 64x16x16, float32, 2
threads, load ~1.5): forward and backward 1.74 ms through the unrolling, against the three
GEMMs' 1.05 ms. These GEMMs stay on OpenBLAS's own 2 threads: splitting their rows across
Numba's threads (as conv2d_transpose then did, a GEMM a thread) held up better under load but cost
a third of mobilenet_v2_small's step on a quiet machine (Dec 3 2026, load ~1.8 from the
benchmark itself, two interleaved pairs: 1,552-1,589 ex/s split against 2,367-2,397).
Narrow ones (both channel counts at most NARROW: the U-Net's 16 -> 10 head on 8x96x128) stream
memory with few multiply-adds a row, and run on one BLAS thread: whole U-Net steps, the two
alternating in one process (Dec 3 2026, 16:00 UTC, load 4.3), 962 -> 668 ms wall and 445 ->
374 ms CPU (OpenBLAS's second thread spins after each GEMM, on the core the next pass needs).
"""

from __future__ import annotations

import contextlib

import numpy as np

NARROW = 16


def applies(f: int, stride: int, pad_top: int, pad_left: int) -> bool:
    return f == 1 and stride == 1 and pad_top == 0 and pad_left == 0


def _blas(layer):
    """BLAS on one thread for a narrow layer's GEMMs, else on its own threads."""
    if max(layer.n_C_prev, layer.n_C) > NARROW:
        return contextlib.nullcontext()
    from ..kernels.threads import one_blas_thread
    return one_blas_thread()


def forward(layer, A_prev, Z):
    """Z = A_prev W (n_C_prev -> n_C per pixel), bias and activation not yet applied."""
    W2 = layer.params["W"].reshape(layer.n_C_prev, layer.n_C)
    with _blas(layer):
        np.matmul(A_prev.reshape(-1, layer.n_C_prev), W2, out=Z.reshape(-1, layer.n_C))
    return Z


def backward(layer, A_prev, dZ):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    W2 = layer.params["W"].reshape(layer.n_C_prev, layer.n_C)
    dZ2 = dZ.reshape(-1, layer.n_C)
    with _blas(layer):
        np.matmul(A_prev.reshape(-1, layer.n_C_prev).T, dZ2, out=layer.grads["W"].reshape(W2.shape))
        if not layer.needs_input_grad:
            return None
        dA_prev = np.empty(A_prev.shape, dtype=dZ.dtype)
        np.matmul(dZ2, W2.T, out=dA_prev.reshape(-1, layer.n_C_prev))
    return dA_prev
