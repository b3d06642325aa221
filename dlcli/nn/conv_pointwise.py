"""Conv2D's pointwise path: a 1x1 convolution without padding is one GEMM as it is.

Its patches are the input itself, so im2col would only copy A_prev into a buffer of the same
layout, and col2im copy the input gradient back: A_prev (m n_H n_W, n_C_prev) @ W (n_C_prev,
n_C) forward, dW = A_prev^T dZ and dA_prev = dZ W^T backward, with no copy at all.
Measured on mobilenet_v2_small's 1x1 expansion (16 -> 64 channels on 64x16x16, float32, 2
threads, load ~1.5): forward and backward 1.74 ms through the unrolling, against the three
GEMMs' 1.05 ms. These GEMMs stay on OpenBLAS's own 2 threads: splitting their rows across
Numba's threads (as conv2d_transpose then did, a GEMM a thread) held up better under load but cost
a third of mobilenet_v2_small's step on a quiet machine (Dec 3 2026, load ~1.8 from the
benchmark itself, two interleaved pairs: 1,552-1,589 ex/s split against 2,367-2,397).
Narrow ones (both channel counts at most STREAMING: the U-Net's 16 -> 10 head on 8x96x128)
stream memory with few multiply-adds a row, and run on one BLAS thread: whole U-Net steps,
the two alternating in one process (Dec 3 2026, 16:00 UTC, load 4.3), 962 -> 668 ms wall and
445 -> 374 ms CPU (OpenBLAS's second thread spins after each GEMM, on the core the next pass
needs). Up to 32 channels a side (16 before): the course's U-Net recipe's 32 -> 23 head on
96x128 was the one layer keeping its step from BLAS's one thread and kernels/duo.py's helper;
its steps, both alternating in one process (Dec 5 2026), 552 -> 469 ms at batch 8 and 1,904
-> 1,780 at its batch of 32; recipes/unet_shapes.yaml's (its 32 -> 16 layer on one thread,
the step still on BLAS's threads) 55.1 -> 51.6 ms.
At stride s the patches are every s-th pixel of every s-th row (a 1x1 window never pads, even
`same`): that subsample, copied, is the GEMM's input, and its gradient is scattered back into
a zeroed dA_prev. It replaced the blocked im2col path for mobilenet_v2_small's stride-2 1x1
shortcut projection (16 -> 24 channels, 64x16x16 -> 64x8x8): forward + backward 1.33 -> 0.37
ms CPU, 3.9 -> 0.37 ms wall (200 interleaved pairs, Dec 3 2026, load 6.4), its GEMMs on one
BLAS thread (SMALL_MACS).
The filter gradient A_prev^T dZ (K = the batch's pixels, 16 x 64 out for the expansion) ran
faster on OpenBLAS's two threads as dZ^T A_prev (64 x 16 out), transposed after: 0.78 ->
0.57 ms median (p25 0.63 -> 0.42; 150 interleaved pairs, Dec 3 2026, load 5-6); on one
thread the two were equal (0.56 ms), and where n_C <= n_C_prev the product stays as it is.
"""

from __future__ import annotations

import contextlib

import numpy as np

# A linear 1x1 layer with at most this many channels a side takes nn/conv_narrow.py's blocks
NARROW = 16
# Both channel counts at most this many: one BLAS thread whatever the size (`one_thread`)
STREAMING = 32
# Multiply-adds a GEMM from which it takes BLAS's own threads; below, one thread: the
# stride-2 projection's 4096x16x24 GEMM (1.6M) took 0.045 ms on one thread, 0.48 on two at
# load 6.7 (the second thread waits for a core), and even quiet two threads save microseconds.
SMALL_MACS = 1 << 22


def applies(f: int, stride: int, pad_top: int, pad_left: int) -> bool:
    return f == 1 and pad_top == 0 and pad_left == 0


def _patches(layer, A_prev):
    """The input pixels the 1x1 windows see: A_prev itself at stride 1, else a contiguous copy
    of every stride-th row and column."""
    s = layer.stride
    if s == 1:
        return A_prev
    return np.ascontiguousarray(A_prev[:, ::s, ::s, :])


def one_thread(layer, rows) -> bool:
    """Whether a narrow or small layer's GEMMs over `rows` pixels run on one BLAS thread."""
    return (max(layer.n_C_prev, layer.n_C) <= STREAMING
            or rows * layer.n_C_prev * layer.n_C < SMALL_MACS)


def _blas(layer, rows):
    """BLAS on one thread for a narrow or small layer's GEMMs, else on its own threads."""
    if not one_thread(layer, rows):
        return contextlib.nullcontext()
    from ..kernels.threads import one_blas_thread
    return one_blas_thread()


def forward(layer, A_prev, Z):
    """Z = A_prev W (n_C_prev -> n_C per pixel), bias and activation not yet applied."""
    W2 = layer.params["W"].reshape(layer.n_C_prev, layer.n_C)
    P = _patches(layer, A_prev)
    with _blas(layer, Z.size // layer.n_C):
        np.matmul(P.reshape(-1, layer.n_C_prev), W2, out=Z.reshape(-1, layer.n_C))
    return Z


def backward(layer, A_prev, dZ):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    W2 = layer.params["W"].reshape(layer.n_C_prev, layer.n_C)
    dZ2 = dZ.reshape(-1, layer.n_C)
    P = _patches(layer, A_prev)
    P2, dW = P.reshape(-1, layer.n_C_prev), layer.grads["W"].reshape(W2.shape)
    with _blas(layer, dZ2.shape[0]):
        if layer.n_C > layer.n_C_prev:
            # OpenBLAS's two threads run this long-K product faster with the wider side as
            # the output's rows: dW^T = dZ^T A_prev, then transposed into place (the module's
            # docstring)
            dW_T = layer.scratch.get("dW_T", (layer.n_C, layer.n_C_prev), dW.dtype)
            np.matmul(dZ2.T, P2, out=dW_T)
            dW[...] = dW_T.T
        else:
            np.matmul(P2.T, dZ2, out=dW)
        if not layer.needs_input_grad:
            return None
        dP = np.empty(P.shape, dtype=dZ.dtype)
        np.matmul(dZ2, W2.T, out=dP.reshape(-1, layer.n_C_prev))
    if layer.stride == 1:
        return dP
    s = layer.stride
    dA_prev = np.zeros(A_prev.shape, dtype=dZ.dtype)  # the pixels no window sees: 0
    dA_prev[:, ::s, ::s, :] = dP
    return dA_prev
