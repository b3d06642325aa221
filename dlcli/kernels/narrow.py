"""A narrow 1x1 convolution over many pixels (the U-Net's 16 -> 10 head on 8x96x128: at
most nn/conv_pointwise.py's NARROW channels each side) as GEMMs on blocks of BLOCK pixels,
with the bias added to each block of Z while it is in cache.

Why: as single GEMMs, (98304, 16) x (16, 10) and its two gradients, OpenBLAS runs these
long, thin products at ~10-17 GMAC/s on one thread, and the bias was a pass of its own over
Z. On blocks of pixels, each product is small enough for its inputs and output to stay in
L1/L2 and OpenBLAS's small-matrix path: one thread, float32, median of 21 (Dec 3 2026, load
~4.6): forward 0.93 -> 0.40 ms, dW = A_prev^T dZ 0.95 -> 0.64, dA_prev = dZ W^T 0.64 ->
0.36 (blocks of 128 to 4096 pixels within 0.05 ms of each other from 256); the U-Net's head
layer alternating with the single GEMMs (61 pairs, load 4-5.7) forward 10.9 -> 1.1 ms,
backward 14.2 -> 2.0. A relu layer's backward takes it too: inception_small's 1x1 branches
at 64x32x32, 16 -> 8 / 4 / 6, 1.57 / 0.95 / 1.28 -> 1.04 / 0.56 / 0.76 ms (61 pairs, load
~4.8). The filter gradient is summed over the blocks in float64 (a float32 sum over 96
blocks would lose digits).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Pixels a block (see the module docstring).
BLOCK = 1024


@njit(cache=True)
def forward_blocks(P, W, b, Z):
    """Z (n, K) = P (n, C) @ W (C, K) + b (K,)."""
    n, K = Z.shape
    for q0 in range(0, n, BLOCK):
        q1 = min(q0 + BLOCK, n)
        Zb = Z[q0:q1]
        np.dot(P[q0:q1], W, Zb)
        for q in range(q1 - q0):
            for k in range(K):
                Zb[q, k] += b[k]


@njit(cache=True)
def backward_blocks(P, dZ, WT, dW, dP, input_grad):
    """dW (C, K) = P^T dZ, and dP (n, C) = dZ WT when input_grad (WT = W^T, contiguous)."""
    n = P.shape[0]
    part = np.empty(dW.shape, dtype=dW.dtype)
    total = np.zeros(dW.shape, dtype=np.float64)
    for q0 in range(0, n, BLOCK):
        q1 = min(q0 + BLOCK, n)
        np.dot(P[q0:q1].T, dZ[q0:q1], part)
        total += part
        if input_grad:
            np.dot(dZ[q0:q1], WT, dP[q0:q1])
    dW[:] = total
