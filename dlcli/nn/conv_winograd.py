"""Conv2D's Winograd path (kernels/winograd.py): 3x3 stride-1 convolutions with enough channels.

The forward pass and the input gradient are both Winograd F(2x2, 3x3) convolutions (the
input gradient with the filter rotated), each replacing an im2col GEMM of 2.25x the
multiplies, and the input gradient's col2im pass too. The filter gradient stays one GEMM
over the unrolled input, unrolled in the backward pass a few examples at a time and summed
while they are in cache (the forward no longer needs the patches).

`Conv2D.build` takes this path when WINOGRAD_MIN_CHANNELS holds; the tests lower it to 1 so
that the whole conv grid runs through it against PyTorch.
"""

from __future__ import annotations

import numpy as np

# Both channel counts at least this many. Measured forward + backward, relu and bias, float32,
# 2 threads, load 1.7-2.2, each path in its own process (Winograd / im2col + GEMM, ms):
# resnet_small's 3x3x32 on 64x32x32x32 35-40 / 45-50; 3x3x32 on 8x48x64x32 14.6 / 16.9;
# 3x3x64 on 8x24x32x64 32-40 / 86-132 (U-Net levels); but 3x3x16 on 8x96x128x16 30-35 /
# 30-32, 3x3x16 on 64x16x16x16 5.3 / 3.6 and 3x3x12 from 8 channels 3.5 / 2.0: with few
# channels the transforms' passes outweigh the GEMMs they shrink.
WINOGRAD_MIN_CHANNELS = 32


# Examples unrolled at once for the filter gradient: 4 of resnet_small's (1.2M values) measured
# 15.2 ms unrolling and summing dW, against 23.4 ms for one batch-wide unrolling and GEMM
# (64x32x32x32, 3x3x32, float32, load ~1.4); 1 example a chunk 18.6 ms, 16 at once 22.9 ms.
FILTER_GRAD_CHUNK = 1 << 20


def applies(f: int, stride: int, n_C_prev: int, n_C: int) -> bool:
    return f == 3 and stride == 1 and min(n_C_prev, n_C) >= WINOGRAD_MIN_CHANNELS


def _transformed(W, rotate=False):
    from ..kernels import winograd as kw
    W = kw.rotated(W) if rotate else W
    U = np.empty((16, W.shape[2], W.shape[3]), dtype=W.dtype)
    kw.filter_transform(W, U)
    return U


def forward(layer, A_prev, Z, chunk_elements):
    """Z = the layer's convolution of A_prev, bias and activation not yet applied."""
    from ..kernels import winograd as kw
    return kw.convolve(A_prev, _transformed(layer.params["W"]), layer.pad_top, layer.pad_left, Z,
                       layer.winograd_buffers, chunk_elements)


def backward(layer, A_prev, dZ, chunk_elements):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    from ..kernels import conv as kconv
    from ..kernels import winograd as kw
    from .conv import kernel
    m, hw, K = A_prev.shape[0], layer.n_H * layer.n_W, layer.n_C
    width = 9 * layer.n_C_prev
    step = max(1, FILTER_GRAD_CHUNK // (hw * width))
    dW2, dZ2 = layer.grads["W"].reshape(width, K), dZ.reshape(-1, K)
    partial = np.empty_like(dW2)
    for i0 in range(0, m, step):  # unrolled a few examples at a time, summed while in cache
        i1 = min(m, i0 + step)
        cols = layer.unrolled.cols(((i1 - i0) * hw, width), dZ.dtype, True)
        kernel(kconv, "im2col", cols.size)(A_prev[i0:i1], 3, 1, layer.pad_top, layer.pad_left,
                                           layer.n_H, layer.n_W, cols)
        np.matmul(cols.T, dZ2[i0 * hw:i1 * hw], out=dW2 if i0 == 0 else partial)
        if i0:
            dW2 += partial
    if not layer.needs_input_grad:
        return None
    dA_prev = np.empty(A_prev.shape, dtype=dZ.dtype)
    # dA_prev[r] = sum_di dZ[r + di - (2 - pad)] W[2 - di]: the rotated filter, padded by 2 - pad
    return kw.convolve(dZ, _transformed(layer.params["W"], rotate=True), 2 - layer.pad_top,
                       2 - layer.pad_left, dA_prev, layer.winograd_buffers, chunk_elements)
