"""Conv2D's pointwise path for a narrow layer over many pixels (the U-Net's 16 -> 10 head on
8x96x128): the GEMMs of nn/conv_pointwise.py on blocks of pixels (kernels/narrow.py, where
the measurements are), a linear layer's bias added in its forward's blocks."""

from __future__ import annotations

import numpy as np

from . import conv_pointwise

# Pixels from which a 1x1 stride-1 conv with at most conv_pointwise.NARROW channels each side
# takes this path; fewer, and the single GEMMs are short enough.
NARROW_FROM = 4096


def applies(layer, pixels: int) -> bool:
    return (layer.pointwise and layer.stride == 1 and pixels >= NARROW_FROM
            and max(layer.n_C_prev, layer.n_C) <= conv_pointwise.NARROW)


def forward(layer, A_prev, Z, training):
    """A linear layer's A = Z = A_prev W + b in one blocked pass (no activation pass)."""
    from ..kernels import narrow
    from ..kernels.threads import one_blas_thread
    from .conv import POINTWISE
    C, K = layer.n_C_prev, layer.n_C
    b = layer.params["b"] if layer.bias else np.zeros(K, dtype=Z.dtype)
    with one_blas_thread():
        narrow.forward_blocks(A_prev.reshape(-1, C), layer.params["W"].reshape(C, K), b,
                              Z.reshape(-1, K))
    if training:
        layer.cache = (A_prev, POINTWISE, Z)  # as Conv2D.forward's, A = Z
    return Z


def backward(layer, A_prev, dZ):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    from ..kernels import narrow
    from ..kernels.threads import one_blas_thread
    C, K = layer.n_C_prev, layer.n_C
    input_grad = layer.needs_input_grad
    dA_prev = np.empty(A_prev.shape if input_grad else (1, 1, 1, C), dtype=dZ.dtype)
    with one_blas_thread():
        narrow.backward_blocks(A_prev.reshape(-1, C), dZ.reshape(-1, K),
                               np.ascontiguousarray(layer.params["W"].reshape(C, K).T),
                               layer.grads["W"].reshape(C, K), dA_prev.reshape(-1, C), input_grad)
    return dA_prev if input_grad else None
