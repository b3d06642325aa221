"""Which kernel path a conv2d layer takes (nn/conv.py's Conv2D calls `choose` when built).

The paths, each in its own module beside this one: direct kernels (few input channels,
stride 1, nn/conv_direct.py), plain GEMMs on the input (1x1 unpadded, nn/conv_pointwise.py;
on blocks of pixels when narrow and large, nn/conv_narrow.py), Winograd F(2x2, 3x3) or
F(4x4, 3x3) (3x3 stride 1 with many channels, nn/conv_winograd.py; few filters on a large
image split its backward, nn/conv_split.py), or else im2col + GEMM (nn/conv_patches.py from 3
input channels, nn/conv.py's batch-wide transposed unrolling below). The choice depends only
on the layer's shape, so it is made once, at build; nn/conv.py's forward and backward follow
the flags set here (and, for a training step, whether the layer needs an input gradient).
"""

from __future__ import annotations

from . import conv_pointwise, conv_split, conv_winograd

# Below this many input channels conv2d unrolls transposed (measured: 2x faster at 1, even at 3).
TRANSPOSED_BELOW = 3
# Below this many input channels a stride-1 conv2d that needs no input gradient (a first
# layer, or inference) runs the direct kernels (nn/conv_direct.py). At 3 channels they beat
# the unrolling too: inception_small's first layer (3x3x16 same on 64x32x32x3, then a 2x2
# max pool now fused into it) took a step from 18.7 to 15.6 ms (Dec 3 2026, load ~2).
DIRECT_BELOW = 4


def choose(layer) -> None:
    """Set the built layer's path flags from its shape (n_C_prev, n_C, f, stride, n_H, n_W and
    its padding, which Conv2D.build has set): transposed, direct, winograd, winograd_block,
    split_backward, pointwise."""
    # few input channels: the transposed unrolling copies whole image rows (kernels/conv.py)
    layer.transposed = layer.n_C_prev < TRANSPOSED_BELOW
    # few channels at stride 1 skip the unrolling: direct loops (kernels/direct.py), for
    # inference and, where no input gradient is wanted (a first layer), for training too
    layer.direct = layer.n_C_prev < DIRECT_BELOW and layer.stride == 1
    # 3x3 stride 1 with enough channels (or an image's few where F(4x4) pays): Winograd
    # (nn/conv_winograd.py)
    layer.winograd = (conv_winograd.applies(layer.f, layer.stride, layer.n_C_prev, layer.n_C,
                                            layer.n_H, layer.n_W)
                      or _large_stem(layer))
    layer.winograd_block = (winograd_block(layer.n_H, layer.n_W, layer.n_C_prev, layer.n_C)
                            if layer.winograd else None)
    # few filters on a large image: its backward split, dW unrolled (nn/conv_split.py), where
    # the BLAS packs every operand
    layer.split_backward = (layer.winograd and layer.pad_top == layer.pad_left
                            and conv_split.taken(layer.n_H, layer.n_W, layer.n_C))
    # 1x1 unpadded: the input (subsampled at a stride) is its own patches
    # (nn/conv_pointwise.py); few channels keep the paths above
    layer.pointwise = (conv_pointwise.applies(layer.f, layer.stride, layer.pad_top,
                                              layer.pad_left)
                       and not layer.transposed)


# An image's channels (at most this many) into a few filters on a large image, the shapes the
# split backward was made for (nn/conv_split.py), take the Winograd forward and the split
# backward (its dW from shifted rows of the input, no input gradient for a first layer) in
# place of the direct kernels: the U-Net's first layer, 8x96x128x3 -> 16 relu without an input
# gradient, forward / backward 3.44 / 3.37 -> 2.29-2.33 / 2.95-3.01 ms (2 threads, float32, 20
# alternations in one process, load 0.8-2.3, Dec 3 2026). With F(4x4) forward the same. Where
# the BLAS multiplies small matrices unpacked, its backward is Winograd's domain instead
# (nn/conv_split.py `taken`; 1.51 / 2.03 ms against the split's 2.64 / 3.28 and the direct
# kernels' 4.01 / 3.42 on the Intel guest).
# inception_small's 32x32x3 -> 16, whose direct kernels run its max pool, keeps them.
STEM_CHANNELS = 3


def _large_stem(layer) -> bool:
    return (layer.f == 3 and layer.stride == 1 and layer.n_C_prev <= STEM_CHANNELS
            and layer.n_C >= conv_winograd.WINOGRAD_MIN_CHANNELS
            and layer.pad_top == layer.pad_left
            and conv_split.applies(layer.n_H, layer.n_W, layer.n_C))


def winograd_block(n_H: int, n_W: int, n_C_prev: int, n_C: int) -> int | None:
    """Transformed values a Winograd block of this layer holds (nn/conv_winograd.py), None for
    kernels/winograd.py's BLOCK_ELEMENTS. Where one example's tiles fill one to two of those
    blocks, they cut it into tile rows with a ragged last block (the U-Net's 12x16x256 -> 128:
    blocks of 32 and 16 tiles against a 256 x 128 U[k], which BLAS packs for every GEMM);
    blocks of whole examples instead, a few of them when an example has few tiles.
    Measured: `WHOLE_EXAMPLES` below."""
    from ..kernels import winograd as kw
    tiles_H, tiles_W = kw.tiles(n_H, n_W)
    example = tiles_H * tiles_W * 16 * max(n_C_prev, n_C)
    return example if kw.BLOCK_ELEMENTS < example <= WHOLE_EXAMPLES * kw.BLOCK_ELEMENTS else None


# Examples' tiles (in BLOCK_ELEMENTS) up to which a Winograd block holds whole examples. One
# thread, batch 8, forward / backward ms (Dec 3 2026, 17:20 UTC, load 1.4): 12x16x256 -> 128
# 6.10 / 17.60 in tile rows (4 + 2 of 6), 4.19 / 10.35 in whole examples (4 a block);
# 24x32x64 -> 64 2.10 / 4.91 against 2.13 / 4.60; but from 3 blocks an example the rows win:
# 24x32x128 -> 64 4.05 / 11.08 in rows of 4 against 5.12 / 11.89 in whole examples.
WHOLE_EXAMPLES = 2
