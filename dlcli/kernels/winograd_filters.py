"""The filter side of the Winograd backward (nn/conv_winograd.py) where a layer has many
channels and few pixels (the U-Net's 12x16 and 6x8 levels): dW transformed from the Numba
threads' dU parts without summing them first.

Why: each thread of the backward sums its own dU (16, C, K), and those were added into one
dU (numpy) before kernels/winograd_grad.py's `filter_grad_transform`: a pass over 16 C K
values per part whatever the batch, 4 MB of float32 a part at 3x3x256x256, for a layer with
only 384 output pixels at batch 8. Here the parts are summed as the transform reads them, in
part order (the same numbers as numpy's sum, whichever thread ran which part). Likewise the
backward's U^T (each position's C x K transposed for the dV GEMMs) is now the transform of W
with its channels swapped (nn/conv_winograd.py), not U copied transposed (2.25x fewer values
moved: 3x3x256x256 1.52 -> 0.98 ms, 256x128 0.75 -> 0.48; a transform storing U^T straight,
a channel at a time or in runs of 16, took 9.0 / 2.0 ms: the stores thrash the cache).
Measured (Dec 3 2026, one process, float32, median of 21, load ~2): the transform of two
parts at 3x3x256x256 1.01 -> 0.50 ms (sum then transform against this), 128x256 0.47 -> 0.23;
the U-Net's Winograd-domain backward passes (batch 8, 2 threads, 81 alternations, load
2.5-2.7): 6x8x256 -> 256 8.26 -> 7.34 ms, 6x8x128 -> 256 4.00 -> 3.58, 12x16x256 -> 128
8.89 -> 8.30, 12x16x128 -> 128 4.79 -> 4.56, 24x32x128 -> 64 8.79 -> 8.37; eight shapes
50.5 -> 47.8 ms. W with its channels swapped (the transform's input for U^T) is copied in
32 x 32 blocks (`swap_channels`) from 128 x 256 channel pairs: numpy's copy of the transposed
view took 0.62 ms at 3x3x256x256, the blocks 0.37 (Dec 4 2026, nn/conv_winograd.py SWAP_MIN).
The transform by ranges of channels (`filter_grad_channels`) lets the position-split backward
(kernels/winograd_positions.py) share it between its threads, one dU and no parts.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def filter_grad_parts(dU_parts, dW):
    """dW[:, :, c, n] = G^T dU[:, c, n] G for dU the sum over parts of dU_parts (P, 16, C, K):
    kernels/winograd_grad.py's filter_grad_transform after dU_parts.sum(axis=0)."""
    C, K = dU_parts.shape[2], dU_parts.shape[3]
    s = np.empty((16, K), dtype=dW.dtype)
    t = np.empty((3, 4, K), dtype=dW.dtype)
    filter_grad_channels(dU_parts, dW, 0, C, s, t)


@njit(inline="always")
def filter_grad_channels(dU_parts, dW, c0, c1, s, t):
    """`filter_grad_parts` of the input channels c0:c1 alone, in the scratch s (16, K) (a
    channel's dU, summed over the parts) and t (3, 4, K): the channels are independent, so
    that threads can each take a range (kernels/winograd_positions.py)."""
    P, _, _, K = dU_parts.shape
    for c in range(c0, c1):
        for k in range(16):
            for n in range(K):
                s[k, n] = dU_parts[0, k, c, n]
            for p in range(1, P):
                for n in range(K):
                    s[k, n] += dU_parts[p, k, c, n]
        for b in range(4):  # G^T dU down the columns
            for n in range(K):
                u0, u1 = s[b, n], s[4 + b, n]
                u2, u3 = s[8 + b, n], s[12 + b, n]
                t[0, b, n] = u0 + 0.5 * (u1 + u2)
                t[1, b, n] = 0.5 * (u1 - u2)
                t[2, b, n] = 0.5 * (u1 + u2) + u3
        for a in range(3):  # then (G^T dU) G along the rows
            for n in range(K):
                u0, u1, u2, u3 = t[a, 0, n], t[a, 1, n], t[a, 2, n], t[a, 3, n]
                dW[a, 0, c, n] = u0 + 0.5 * (u1 + u2)
                dW[a, 1, c, n] = 0.5 * (u1 - u2)
                dW[a, 2, c, n] = 0.5 * (u1 + u2) + u3


@njit(cache=True)
def swap_channels(W, WT):
    """WT[a, b, n, c] = W[a, b, c, n]: the backward's U^T is the transform of W with its
    channels swapped. In square blocks of 32 x 32 values (4 KB each way, in L1): numpy's
    copy of the transposed view strides through W a value at a time (3x3x256x256 0.68 ms)."""
    R, S, C, K = W.shape
    for a in range(R):
        for b in range(S):
            for c0 in range(0, C, 32):
                c1 = min(c0 + 32, C)
                for n0 in range(0, K, 32):
                    n1 = min(n0 + 32, K)
                    for n in range(n0, n1):
                        for c in range(c0, c1):
                            WT[a, b, n, c] = W[a, b, c, n]
