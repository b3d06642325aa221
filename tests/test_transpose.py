"""conv2d_transpose's blocked kernels (kernels/transpose.py): against a numpy scatter, and the
parallel driver, small blocks and float32 equal to the serial driver (the PyTorch grid is in
test_conv.py and test_detect_layers.py)."""

import numpy as np
import pytest

from dlcli.kernels import transpose as ktr
from dlcli.nn.conv_transpose import Conv2DTranspose
from dlcli.nn import conv_transpose
from test_conv import built, close, run


def scatter(x, W, s, crop, n_H, n_W):
    """The transpose convolution as its definition: each input pixel adds x W[di, dj] at
    (h s + di - crop, w s + dj - crop)."""
    m, H, Wd, _ = x.shape
    f, K = W.shape[0], W.shape[3]
    full = np.zeros((m, (H - 1) * s + f, (Wd - 1) * s + f, K))
    for h in range(H):
        for w in range(Wd):
            for di in range(f):
                for dj in range(f):
                    full[:, h * s + di, w * s + dj] += x[:, h, w] @ W[di, dj]
    return full[:, crop:crop + n_H, crop:crop + n_W]


@pytest.mark.parametrize("f,s,padding", [(3, 2, "same"), (2, 2, "valid"), (2, 3, "valid"),
                                         (4, 2, "same"), (3, 1, "valid")])
def test_forward_equals_a_numpy_scatter(f, s, padding):
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 3))
    layer = built(Conv2DTranspose(2, f, stride=s, padding=padding, bias=False), x.shape[1:])
    y = layer.forward(x, False)
    close(y, scatter(x, layer.params["W"], s, layer.crop, layer.n_H, layer.n_W), 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layer", [
    lambda: Conv2DTranspose(3, 3, stride=2, padding="same", activation="relu"),
    lambda: Conv2DTranspose(2, 2, stride=2),
    lambda: Conv2DTranspose(3, 2, stride=3),  # output rows no input reaches
    lambda: Conv2DTranspose(4, 4, stride=2, padding="same")])
def test_parallel_runs_and_small_blocks_equal_the_serial_pass(monkeypatch, layer, dtype):
    x = np.random.default_rng(4).standard_normal((5, 5, 6, 4)).astype(dtype)
    plain, split = (built(layer(), x.shape[1:], dtype) for _ in range(2))
    expected = run(plain, x)
    monkeypatch.setattr(conv_transpose, "PARALLEL_MIN", 0)
    monkeypatch.setattr(ktr, "MIN_PIXELS", 1)
    monkeypatch.setattr(ktr, "BLOCK_VALUES", 1)  # a row a block: blocks share output rows
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(run(split, x), expected):
        close(a, b, tol)
    for key, grad in plain.grads.items():
        close(split.grads[key], grad, tol)


def test_blocks_hold_more_pixels_where_w_rows_is_large():
    """kernels/transpose.py `block_rows`: the U-Net's deepest transpose (6x8x256 -> 128, W_rows
    256 x 1152) takes 384 pixels a block (48 rows of 8), its 48x64x32 -> 16 MIN_PIXELS."""
    assert ktr.block_rows(8, 9 * 128, 256) == 48
    assert ktr.block_rows(8, 9 * 128) == 16
    assert ktr.block_rows(64, 9 * 16, 32) == 2
