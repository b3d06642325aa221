"""Conv2D's Winograd path (kernels/winograd.py): 3x3 stride-1 convolutions with enough channels.

The forward pass is a Winograd F(2x2, 3x3) convolution (kernels/winograd.py), replacing an
im2col GEMM of 2.25x the multiplies; the backward pass computes the filter gradient and the
input gradient in Winograd's domain from one transform of dZ (kernels/winograd_grad.py),
replacing the unrolled filter-gradient GEMM, the dcols GEMM and col2im. Where it measured
faster (`four`: resnet_small's 3x3x32 layers on 32x32) both passes run F(4x4, 3x3) instead
(kernels/winograd4.py, kernels/winograd4_grad.py: 36 multiplies a 4x4 output tile against
F(2x2)'s 64). Nothing but A_prev is kept from the forward. Each pass runs as one parallel
region: a run of blocks a thread, every GEMM on the thread that made its operands, BLAS held
to one thread meanwhile; or, for the U-Net's deep layers (kernels/winograd.py `by_positions`),
the whole batch's 16 GEMMs a tile position a thread (kernels/winograd_positions.py,
`_backward_positions`). Inside a training step the same runs go to the main thread and
kernels/duo.py's helper instead of Numba's workers (kernels/conv_duo.py: no region to wake).

A trainable batch norm right after a bias-free linear Winograd conv takes the batch's moments
from the conv's output pass (`fuse`; kernels/batchnorm.py `moments_add`), not from a pass of
its own over Z.
Otherwise a layer with a bias or a piecewise-linear activation (relu, leaky relu) has the
output transform write A = g(Z + b) itself (`activates`, kernels/winograd_tiles.py), with no
bias + activation pass over Z after it.
Its backward then takes dA and A (relu, leaky relu: `folds`): dZ = dA g'(A) and db are made
as the backward gathers dZ's tiles, no activation-backward pass and no dZ array before it.

`Conv2D.build` takes this path when WINOGRAD_MIN_CHANNELS holds; the tests lower it to 1 so
that the whole conv grid runs through it against PyTorch, and the FOUR_ limits likewise.
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


def applies(f: int, stride: int, n_C_prev: int, n_C: int, n_H: int = 0, n_W: int = 0) -> bool:
    """3x3 stride 1 with enough channels, or an image's few channels where F(4x4) measured
    faster than the direct kernels (`FOUR_STEM_CHANNELS`)."""
    return f == 3 and stride == 1 and (min(n_C_prev, n_C) >= WINOGRAD_MIN_CHANNELS
                                       or _four_fits(n_C_prev, n_C, n_H, n_W))


# F(4x4, 3x3) (kernels/winograd4.py) where both channel counts are at least FOUR_MIN_CHANNELS
# and the output is FOUR_MIN_SIDE or more a side, FOUR_MAX_PIXELS at most: where it was
# measured, resnet_small's 64x32x32x32 -> 32 (2 threads, float32, alternating with F(2x2) in
# one process, load ~3, Dec 3 2026): forward with the batch norm's moments 7.7 -> 6.3 ms,
# backward (both gradients and the shortcut's addend) 13.4 -> 11.6 ms. The U-Net's 48x64 and
# 24x32 levels too (batch 8, relu, float32, forward / backward ms, 2 threads, 20 alternations
# with F(2x2), load 1.6-2.3, Dec 3 2026, 23:53 UTC): 48x64x32 -> 32 2.44 / 4.79 -> 2.08 /
# 3.97, 48x64x64 -> 32 4.23 / 9.15 -> 3.31 / 7.92, 24x32x32 -> 64 1.12 / 2.17 -> 0.99 / 1.92,
# 24x32x64 -> 64 1.86 / 3.86 -> 1.57 / 3.41, 24x32x128 -> 64 3.32 / 8.70 -> 2.96 / 9.15.
FOUR_MIN_CHANNELS = 32
FOUR_MIN_SIDE = 24
FOUR_MAX_PIXELS = 48 * 64
# An image's channels (at most this many) into FOUR_MIN_CHANNELS filters or more take F(4x4)
# too, in place of the direct kernels (kernels/direct.py): resnet_small's stem, 64x32x32x3 ->
# 32 without an input gradient, the layer alone (no batch norm's moments on either side; in
# the model its batch norm takes them from the output pass): forward 5.25 -> 2.77 ms, forward
# + backward 9.42 -> 5.38 (2 threads, alternating, load 3.2-4.5).
FOUR_STEM_CHANNELS = 3


def _four_fits(n_C_prev: int, n_C: int, n_H: int, n_W: int) -> bool:
    return ((n_C_prev >= FOUR_MIN_CHANNELS or n_C_prev <= FOUR_STEM_CHANNELS)
            and n_C >= FOUR_MIN_CHANNELS and min(n_H, n_W) >= FOUR_MIN_SIDE
            and n_H * n_W <= FOUR_MAX_PIXELS)


def four(layer) -> bool:
    """Whether the layer runs F(4x4, 3x3) rather than F(2x2, 3x3) (the limits above; a layer
    of the shapes nn/conv_split.py was made for by its rule, whichever backward it takes)."""
    from . import conv_split
    if layer.winograd and layer.pad_top == layer.pad_left and conv_split.applies(
            layer.n_H, layer.n_W, layer.n_C):
        return conv_split.four(layer.n_C_prev, layer.n_C)
    return layer.winograd and _four_fits(layer.n_C_prev, layer.n_C, layer.n_H, layer.n_W)


def buffer(layer, name: str, shape: tuple, dtype) -> np.ndarray:
    """An array the layer keeps from one training step to the next (its output Z, dZ, its
    dA_prev), as the dense layers keep theirs: a fresh 8 MB array costs its page faults at
    first touch, inside the parallel pass (64x32x32x32 forward, after a step's worth of
    arrays freed: 11.0 ms fresh against 6.9 reused, load ~1.6)."""
    buf = layer.winograd_buffers.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = layer.winograd_buffers[name] = np.empty(shape, dtype=dtype)
    return buf


def block_elements(layer) -> int:
    """Transformed values a block holds: the layer's own choice (nn/conv_paths.py's
    `winograd_block`, set at build), else kernels/winograd.py's."""
    from ..kernels import winograd as kw
    return getattr(layer, "winograd_block", None) or kw.BLOCK_ELEMENTS


def _kernels(layer):
    """(forward module, backward module, block elements) of the layer's Winograd variant."""
    if four(layer):
        from ..kernels import winograd4 as k4, winograd4_grad as g4
        return k4, g4, k4.BLOCK_ELEMENTS
    from ..kernels import winograd as kw, winograd_grad as kg
    return kw, kg, block_elements(layer)


def _transformed(W, kw):
    U = np.empty((kw.P, W.shape[2], W.shape[3]), dtype=W.dtype)
    kw.filter_transform(W, U)
    return U


# Filters of at least this many C x K values swap their channels in Numba's blocks
# (kernels/winograd_filters.py `swap_channels`), smaller ones by numpy's copy. float32,
# medians of 31 alternations, load ~2 (Dec 4 2026): 3x3x256x256 0.616 -> 0.377 ms, 128x256
# 0.252 -> 0.174, 256x128 0.300 -> 0.178; 128x128 0.069 against 0.077.
SWAP_MIN = 128 * 256


def _swapped(W):
    """W (3, 3, C, K) with its channels swapped, contiguous: the backward's U^T is its
    transform."""
    if W.shape[2] * W.shape[3] < SWAP_MIN:
        return np.ascontiguousarray(W.transpose(0, 1, 3, 2))
    from ..kernels import winograd_filters as k2f
    WT = np.empty((W.shape[0], W.shape[1], W.shape[3], W.shape[2]), dtype=W.dtype)
    k2f.swap_channels(W, WT)
    return WT


def fuse(layer, after) -> bool:
    """A trainable batch norm right after this bias-free linear Winograd conv takes the batch's
    mean and variance from the conv's output pass (kernels/batchnorm.py `moments_add`): its
    own statistics pass over Z is gone."""
    from .layers import BatchNorm
    fits = (layer.winograd and isinstance(after, BatchNorm) and layer.activation == "linear"
            and "b" not in layer.params)
    layer.norm = after if fits else None
    return fits


def activates(layer, training=False) -> bool:
    """Whether `forward` writes A = g(Z + b) itself (the output transform's epilogue,
    kernels/winograd_tiles.py `scatter_tile_row`): a piecewise-linear activation, and no
    batch norm taking Z's moments. The U-Net's convs then skip the bias + relu pass over
    their output: see `EPILOGUE`."""
    from .activations import PIECEWISE
    norm = getattr(layer, "norm", None)
    return (layer.activation in PIECEWISE and not (training and norm is not None and norm.trainable)
            and not (layer.activation == "linear" and "b" not in layer.params))


# Bias and activation in the output transform (`activates`), against the pass after it
# (kernels/activations.py): see the module docstring of kernels/winograd_tiles.py.
EPILOGUE = True


def _epilogue(layer, K, dtype):
    """The bias then the slope where z + b <= 0 (relu 0, leaky relu's, linear 1), K + 1 values
    in Z's dtype, as kernels/activations.py's forward rounds them."""
    from .activations import slope
    e = np.empty(K + 1, dtype=dtype)
    b = layer.params.get("b")
    e[:K] = 0 if b is None else b
    e[K] = slope(layer.activation, dtype)
    return e


def forward(layer, A_prev, Z, training=False, activate=False):
    """Z = the layer's convolution of A_prev (in blocks of kernels/winograd.py's size), bias
    and activation not yet applied, or applied when `activate` (see `activates`). Training
    with a batch norm fused after (`fuse`), its moments are left with it
    (BatchNorm.moments_given), tagged with Z."""
    kw, _, elements = _kernels(layer)
    U = _transformed(layer.params["W"], kw)
    norm = getattr(layer, "norm", None)
    if not (training and norm is not None and norm.trainable):
        epilogue = _epilogue(layer, U.shape[2], Z.dtype) if activate else None
        return kw.convolve(A_prev, U, layer.pad_top, layer.pad_left, Z, elements,
                           epilogue=epilogue)
    Z, mean, var = kw.convolve(A_prev, U, layer.pad_top, layer.pad_left, Z, elements,
                               moments=True)
    norm.moments_given = (Z, mean, var)
    return Z


def takes_addend(layer, shape, dtype) -> bool:
    """Whether the layer's next backward can add an array of A_prev's shape into its dA_prev
    in its own passes (`backward`'s addend): a Winograd-domain backward with an input
    gradient (not nn/conv_split.py's)."""
    return (getattr(layer, "winograd", False) and not layer.split_backward
            and layer.needs_input_grad and tuple(shape[1:]) == tuple(layer.input_shape)
            and dtype == layer.params["W"].dtype)


# A relu (or leaky relu) layer's backward takes dA and A: dZ = dA g'(A) and db are made in
# the pass's gather of dZ's tiles (kernels/winograd_tiles.py `gather_tile_row`), in place of
# kernels/activations.py's pass over the whole layer before it: see `backward_activation`.
FOLD = True


def folds(layer) -> bool:
    """Whether the layer's backward takes dA and its output A (`backward_activation`)."""
    return FOLD and layer.activation in ("relu", "leaky_relu")


def backward_activation(layer, A_prev, dA, A, chunk_elements):
    """`backward` from dA and the layer's output A (relu or leaky relu, `folds`): dZ is
    never stored, the bias gradient comes out of the same pass."""
    return backward(layer, A_prev, np.ascontiguousarray(dA, dtype=A.dtype), chunk_elements, A)


def backward(layer, A_prev, dZ, chunk_elements, A=None):
    """The layer's dW (into layer.grads["W"]) and dA_prev (None if the layer needs none),
    both from one pass in Winograd's domain (kernels/winograd_grad.py). An array left in
    layer.winograd_buffers["addend"] (`takes_addend`: a residual block's shortcut gradient,
    nn/conv_blocks.py) is added to dA_prev in the same pass, and taken out. Given A (the
    layer's output), dZ is dA (`backward_activation`)."""
    from ..kernels import winograd as k2, winograd_grad as k2g, winograd_filters as k2f
    from .activations import slope as g_slope
    kw, kg, elements = _kernels(layer)
    m, n_H, n_W, K = dZ.shape
    C = layer.n_C_prev
    input_grad = layer.needs_input_grad
    addend = layer.winograd_buffers.pop("addend", None)
    if addend is None or not input_grad:
        addend = np.empty((0, 1, 1, 1), dtype=dZ.dtype)
    if kw is k2:  # U^T as the transform of W transposed: no copy of U (kernels/winograd_filters.py)
        UT = _transformed(_swapped(layer.params["W"]), kw)
    else:
        UT = k2g.transposed(_transformed(layer.params["W"], kw))
    dA_prev = (buffer(layer, "dA_prev", A_prev.shape, dZ.dtype) if input_grad
               else np.empty((1, 1, 1, 1), dtype=dZ.dtype))
    activated = A is not None
    if not activated:
        A = np.empty((0, 1, 1, 1), dtype=dZ.dtype)
    slope = g_slope(layer.activation if activated else "relu", dZ.dtype)  # read if activated
    if kw is k2 and k2.by_positions(m, n_H, n_W, C, K):
        _backward_positions(layer, A_prev, dZ, UT, dA_prev, input_grad, addend, A, slope)
        return dA_prev if input_grad else None
    rows, examples = kw.blocks(m, n_H, n_W, C, K, elements)
    parts = 1 if dZ.size * 9 * C < k2.PARALLEL_MIN or m == 1 else k2.parts(m)
    dU = np.empty((parts, kw.P, C, K), dtype=dZ.dtype)
    db_parts = np.empty((parts, K if activated else 0), dtype=dZ.dtype)
    if parts == 1:
        kg.backward_blocks(A_prev, dZ, UT, layer.pad_top, layer.pad_left, examples, rows, dU,
                           dA_prev, input_grad, addend, A, slope, db_parts)
    else:  # a run of whole examples a thread: an example's input-gradient tiles overlap
        from ..kernels import conv_duo
        args = (A_prev, dZ, UT, layer.pad_top, layer.pad_left, examples, rows, dU, dA_prev,
                input_grad, addend, A, slope, db_parts)
        k2.shared(parts, kg.backward_blocks_parallel, args,
                  conv_duo.backward_blocks_duo if kw is k2 else conv_duo.backward4_blocks_duo,
                  args)
    if activated and "b" in layer.grads:
        db_parts.sum(axis=0, out=layer.grads["b"])
    if kw is k2:
        k2f.filter_grad_parts(dU, layer.grads["W"])  # the runs' dU summed as it transforms them
    else:
        kg.filter_grad_transform(dU.sum(axis=0), layer.grads["W"])
    return dA_prev if input_grad else None


def _backward_positions(layer, A_prev, dZ, UT, dA_prev, input_grad, addend, A, slope):
    """`backward` with the whole batch's GEMMs split between the threads by tile position
    (kernels/winograd_positions.py): one dU, dW transformed inside the same region."""
    from ..kernels import winograd as k2, winograd_positions as kp
    m, n_H, n_W, K = dZ.shape
    C = layer.n_C_prev
    parts = k2.parts(16)
    chunks = kp.chunks(m, parts)
    V, M = kp.scratch(m, n_H, n_W, C, K, dZ.dtype)
    dU = buffer(layer, "dU", (1, 16, C, K), dZ.dtype)
    db = np.empty((chunks, K if A.shape[0] > 0 else 0), dtype=dZ.dtype)
    tiles_H, tiles_W = k2.tiles(n_H, n_W)
    zeroed = not kp.covers(A_prev.shape[1], A_prev.shape[2], tiles_H, tiles_W, layer.pad_top,
                            layer.pad_left)
    from ..kernels import conv_duo
    rest = (dU, layer.grads["W"], dA_prev, input_grad, addend, A, slope, db, zeroed,
            kp.counters())
    k2.shared(parts, kp.backward_positions_parallel,
              (A_prev, dZ, UT, layer.pad_top, layer.pad_left, V, M, parts) + rest,
              conv_duo.backward_positions_duo,
              (A_prev, dZ, UT, layer.pad_top, layer.pad_left, V, M) + rest)
    if A.shape[0] > 0 and "b" in layer.grads:
        db.sum(axis=0, out=layer.grads["b"])
