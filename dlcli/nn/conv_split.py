"""Conv2D's Winograd forward with a split backward: the filter gradient on shifted rows of
the input, the input gradient a Winograd convolution of dZ.

nn/conv_winograd.py computes both gradients in Winograd's domain from one transform of dZ.
Where a layer has few output channels on a large image (the U-Net's top, 96x128 at 16
filters), that pass transforms dZ and dA_prev tile by tile for narrow 16 x K GEMMs, and on
OpenBLAS's Haswell kernels, which pack every operand of those, the older split pass measured
faster (elsewhere the layer keeps Winograd's domain: `taken`): dW on blocks of image rows
(kernels/filter_grad.py: dot products of channel-major copies of the rows, shifted; before,
nine GEMMs A_prev(shifted)^T dZ and, before those, kernels/transpose.py's gather + GEMM
pass), and dA_prev = the convolution of dZ with the rotated filter, padded by 2 - pad
(kernels/winograd.py's forward, K -> C channels; with 16 channels or more each side
kernels/winograd4.py's F(4x4), as the layer's forward: `FOUR_MIN_CHANNELS`). The U-Net's
first layer (3 channels in, no input gradient) takes this path too, in place of the direct
kernels (nn/conv_paths.py `_large_stem`). A relu layer's dZ (and db) come out of the filter
gradient's pass, a block of rows as it copies them (`backward_activation`,
kernels/filter_grad.py), not from a serial pass over the whole layer before it.

Measured (Dec 3 2026, 12:40-12:46 UTC, load 2.5-2.8, the layer's backward on 2 threads,
median of 11 interleaved, batch 8, relu): see `SPLIT_MAX_FILTERS` below.
"""

from __future__ import annotations

import numpy as np

# Winograd layers with at most this many filters and at least SPLIT_MIN_PIXELS outputs an
# example take the split backward. Backward ms, Winograd's domain against split, batch 8
# (two runs, 12:40 and 12:43 UTC, load 2.5-2.8): 96x128x32 -> 16 34.9 against 27.1,
# 96x128x16 -> 16 21.7 against 19.0; but 48x64x32 -> 32 12.3 against 15.2, 48x64x64 -> 32
# 20.3 against 25.4, 24x32x128 -> 64 18.1 against 20.3, 6x8x256 -> 256 12.9 against 14.3.
# Again with kernels/filter_grad.py's dW (17:37 UTC, load ~7, CPU ms, 2 threads, median of 9
# interleaved): 96x128x16 -> 16 10.1 in Winograd's domain against 10.6 split, 96x128x32 -> 16
# 18.2 against 18.8; 48x64 to 12x16 the split 10-40% slower: within the noise at 96x128, so
# the rule was left as it was; measure both at a quiet moment before changing it.
# With kernels/filter_grad.py's dot products in place of those GEMMs (Dec 4 2026, 19:16 UTC,
# load 1.6-2.0, whole U-Net steps at batch 8, models built under each rule, 12 rounds in
# turn): 16 filters from 64x64 pixels 271.9 ms, 32 from 48x64 280.3, 64 from 24x32 298.6.
SPLIT_MAX_FILTERS = 16
SPLIT_MIN_PIXELS = 64 * 64


# From this many channels on each side a split layer's forward and its input gradient (both
# Winograd convolutions) run F(4x4, 3x3) (kernels/winograd4.py; nn/conv_winograd.py `four`),
# its filter gradient as before. The U-Net's top layers, batch 8, relu, float32, forward /
# backward ms, F(2x2) against F(4x4) (2 threads, 30 alternations in one process, load ~2.8,
# Dec 4 2026): 96x128x16 -> 16 3.97 / 7.60 -> 3.48 / 7.11, 96x128x32 -> 16 6.69 / 12.65 ->
# 5.40 / 12.15. Its first layer (3 channels in, no input gradient) measured the same on
# either (forward 2.29 against 2.33 ms): it keeps F(2x2).
FOUR_MIN_CHANNELS = 16


def applies(n_H: int, n_W: int, n_C: int) -> bool:
    """Whether the layer's shape is one the split backward was made for (few filters on a
    large image); `taken` says whether this process's BLAS takes it."""
    return n_C <= SPLIT_MAX_FILTERS and n_H * n_W >= SPLIT_MIN_PIXELS


# The split was measured against Winograd's domain on OpenBLAS's Haswell kernels, which pack
# every operand: the domain's 16 x K products per tile position are what they multiply worst.
# OpenBLAS's AVX-512 kernels multiply such small matrices unpacked (kernels/small_gemm.py
# `small_matrix_path`), and there the domain's pass, F(4x4) as `four` says, wins at every
# layer of the U-Net's top (2-core Intel AVX-512 guest, Dec 4 2026, batch 8, relu, float32,
# 2 threads, forward / backward ms, 22 alternations in one process, load ~1): 96x128x16 -> 16
# split 2.41 / 7.82, domain F(2x2) 2.72 / 5.20, domain F(4x4) 2.30 / 4.30; 96x128x32 -> 16
# 3.37 / 12.26, 4.18 / 7.85, 3.47 / 6.43; the first layer (3 channels in, no input gradient)
# 2.64 / 3.28, 1.51 / 2.03, 1.45 / 1.99. Whole U-Net steps there, 10 rounds of 3 in turn:
# 184.4-188.9 ms split, 166.7-170.4 domain F(4x4). None: ask OpenBLAS once, at the first build.
SMALL_MATRIX_BLAS = None


def taken(n_H: int, n_W: int, n_C: int) -> bool:
    """Whether a Winograd layer of this shape takes the split backward in this process."""
    global SMALL_MATRIX_BLAS
    if not applies(n_H, n_W, n_C):
        return False
    if SMALL_MATRIX_BLAS is None:
        from ..kernels.small_gemm import small_matrix_path
        SMALL_MATRIX_BLAS = small_matrix_path()
    return not SMALL_MATRIX_BLAS


def four(n_C_prev: int, n_C: int) -> bool:
    return min(n_C_prev, n_C) >= FOUR_MIN_CHANNELS


def _rotated_transform(W, kw):
    """U of the filter that maps dZ to dA_prev (W turned 180 degrees, its channels swapped),
    for the Winograd module kw (kernels/winograd.py or kernels/winograd4.py)."""
    rotated = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2))
    U = np.empty((kw.P, rotated.shape[2], rotated.shape[3]), dtype=W.dtype)
    kw.filter_transform(rotated, U)
    return U


# A relu (or leaky relu) layer on this path has its dZ written by the filter gradient's pass,
# a block of rows at a time as it copies them (kernels/filter_grad.py), in
# place of kernels/activations.py's serial pass over the whole layer before it: see
# `backward_activation`.
ACTIVATION = True


def folds(layer) -> bool:
    """Whether the layer's backward takes dA and its output A (`backward_activation`)."""
    return ACTIVATION and layer.activation in ("relu", "leaky_relu")


def backward(layer, A_prev, dZ):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none)."""
    return _backward(layer, A_prev, dZ, None, None)


def backward_activation(layer, A_prev, dA, A):
    """`backward` from dA and the layer's output A (relu or leaky relu, `folds`): dZ (kept
    in the layer's buffers) and the bias gradient come out of the filter gradient's pass."""
    from . import conv_winograd
    dZ = conv_winograd.buffer(layer, "dZ", A.shape, A.dtype)
    return _backward(layer, A_prev, dZ, np.ascontiguousarray(dA, dtype=A.dtype), A)


def _backward(layer, A_prev, dZ, dA, A):
    from ..kernels import filter_grad as kf
    from ..kernels import winograd as kw
    from .activations import slope as g_slope
    from . import conv_winograd
    m, n_H, n_W, K = dZ.shape
    rows = kf.block_rows(n_W)
    activated = dA is not None
    if not activated:
        dA = A = np.empty((0, 1, 1, 1), dtype=dZ.dtype)
    slope = g_slope(layer.activation if activated else "relu", dZ.dtype)  # read if activated
    # dot products on channel-major copies of blocks of rows (kernels/filter_grad.py)
    if dZ.size * 9 * layer.n_C_prev < kw.PARALLEL_MIN or m == 1:
        dW_parts = np.empty((1,) + layer.grads["W"].shape, dtype=dZ.dtype)
        db_parts = np.empty((1, K if activated else 0), dtype=dZ.dtype)
        kf.filter_grad(A_prev, dZ, layer.pad_top, layer.pad_left, rows, dW_parts, dA, A, slope,
                       db_parts)
    else:
        dW_parts = np.empty((kw.parts(m),) + layer.grads["W"].shape, dtype=dZ.dtype)
        db_parts = np.empty((len(dW_parts), K if activated else 0), dtype=dZ.dtype)
        from ..kernels import conv_duo
        args = (A_prev, dZ, layer.pad_top, layer.pad_left, rows, dW_parts, dA, A, slope,
                db_parts)
        kw.shared(len(dW_parts), kf.filter_grad_parallel, args, conv_duo.filter_grad_duo, args)
    if len(dW_parts) == 1:
        layer.grads["W"][...] = dW_parts[0]
    else:
        dW_parts.sum(axis=0, out=layer.grads["W"])
    if activated and "b" in layer.grads:
        db_parts.sum(axis=0, out=layer.grads["b"])
    if not layer.needs_input_grad:
        return None
    dA_prev = conv_winograd.buffer(layer, "dA_prev", A_prev.shape, dZ.dtype)
    if conv_winograd.four(layer):
        from ..kernels import winograd4 as kw
    return kw.convolve(dZ, _rotated_transform(layer.params["W"], kw), 2 - layer.pad_top,
                       2 - layer.pad_left, dA_prev)
