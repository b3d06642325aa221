"""Winograd F(2x2, 3x3) (kernels/winograd.py, kernels/winograd_grad.py, nn/conv_winograd.py):
the kernels against a numpy convolution and its gradients, the conv2d layer on that path against PyTorch in float64 over the conv
grid's stride-1 3x3 cases, and its gradients against finite differences. Also the pointwise
path (nn/conv_pointwise.py), which tests/test_conv.py's grid runs at 1x1 stride 1."""

import itertools

import numpy as np
import pytest

from conftest import numerical_grad
from dlcli.nn import conv_winograd
from dlcli.nn.conv import Conv2D
from test_conv import built, close, nchw, nhwc, oracle, padded, run

NO_MOMENTS = np.zeros((3, 3, 0))  # the drivers' moments argument when no batch norm takes them


def numpy_conv(A, W, pad_top, pad_left, n_H, n_W):
    """Z[i, h, w, k] = sum A[i, h + di - pad_top, w + dj - pad_left, c] W[di, dj, c, k], 0 outside."""
    m, H, Wd, C = A.shape
    f = W.shape[0]
    big = np.zeros((m, n_H + f + abs(pad_top) + H, n_W + f + abs(pad_left) + Wd, C), dtype=A.dtype)
    big[:, pad_top + f:pad_top + f + H, pad_left + f:pad_left + f + Wd] = A  # shifted by f
    Z = np.zeros((m, n_H, n_W, W.shape[3]), dtype=np.float64)
    for di in range(f):
        for dj in range(f):
            window = big[:, di + f:di + f + n_H, dj + f:dj + f + n_W]
            Z += window @ W[di, dj]
    return Z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", [
    (2, 7, 5, 3, 4, 1, 7, 5),     # same, odd sizes: cropped last tiles
    (3, 6, 6, 2, 5, 0, 4, 4),     # valid
    (1, 5, 8, 4, 3, 2, 7, 10),    # padding 2: the output is larger than the input
    (2, 4, 4, 5, 2, -1, 2, 2),    # a negative pad: the input cropped
    (1, 1, 1, 1, 1, 1, 1, 1)])
def test_convolve_matches_numpy(m, H, Wd, C, K, pad, n_H, n_W, dtype):
    from dlcli.kernels import winograd as kw
    rng = np.random.default_rng(0)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    U = np.empty((16, C, K), dtype=dtype)
    kw.filter_transform(W, U)
    expected = numpy_conv(A.astype(np.float64), W.astype(np.float64), pad, pad, n_H, n_W)
    tH, _ = kw.tiles(n_H, n_W)
    for rows in (1, 2, tH):  # blocks of one tile row, of two (the last one short), whole examples
        block = rows * 16 * -(-n_W // 2) * max(C, K)
        Z = kw.convolve(A, U, pad, pad, np.empty((m, n_H, n_W, K), dtype=dtype), block)
        close(Z, expected, 1e-12 if dtype == np.float64 else 1e-5)
        # the serial and parallel drivers, in 1 to 3 runs of blocks: the same numbers
        Z1 = np.empty((m, n_H, n_W, K), dtype=dtype)
        kw.convolve_blocks(A, U, pad, pad, Z1, min(rows, tH), 1, 1, NO_MOMENTS, np.zeros(0, dtype))
        for parts in (1, 2, 3):
            Z2 = np.full_like(Z1, np.nan)
            kw.convolve_blocks_parallel(A, U, pad, pad, Z2, min(rows, tH), 1,
                                        min(parts, m * -(-tH // rows)), NO_MOMENTS, np.zeros(0, dtype))
            np.testing.assert_array_equal(Z1, Z2)
        np.testing.assert_array_equal(Z, Z1)
    for examples in (2, 3):  # blocks of several whole examples (longer GEMMs: BLAS may sum
        for parts in (1, 2):  # in another order)
            Z2 = np.full((m, n_H, n_W, K), np.nan, dtype=dtype)
            kw.convolve_blocks_parallel(A, U, pad, pad, Z2, tH, examples,
                                        min(parts, -(-m // examples)), NO_MOMENTS, np.zeros(0, dtype))
            close(Z2, expected, 1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,H,Wd,C,K,offset", [
    (2, 7, 5, 3, 4, 0.0),       # odd sizes: the cropped tiles' outputs counted once
    (5, 9, 8, 2, 6, 1000.0),    # a mean far from zero cancels nothing
    (1, 1, 1, 1, 1, 0.0),
    (9, 4, 6, 3, 2, -50.0)])
def test_convolve_takes_the_batch_moments_of_z(m, H, Wd, C, K, offset, dtype):
    """kernels/winograd.py's moments (for a batch norm after the conv) against numpy's mean
    and biased variance of Z per channel, from the serial driver and from 1 to 4 runs of
    blocks in parallel, each run's sums shifted by its own first pixel."""
    from dlcli.kernels import winograd as kw
    from dlcli.kernels.batchnorm import moments
    rng = np.random.default_rng(m * H)
    A = (rng.standard_normal((m, H, Wd, C)) + offset).astype(dtype)
    W = rng.standard_normal((3, 3, C, K)).astype(dtype)
    U = np.empty((16, C, K), dtype=dtype)
    kw.filter_transform(W, U)
    Z, mean, var = kw.convolve(A, U, 1, 1, np.empty((m, H, Wd, K), dtype=dtype), moments=True)
    z = Z.astype(np.float64).reshape(-1, K)
    tol = 1e-12 if dtype == np.float64 else 1e-9  # the moments of the float32 Z, in float64
    close(mean, z.mean(axis=0), tol)
    close(var, z.var(axis=0), tol)
    tH, _ = kw.tiles(H, Wd)
    for parts in (1, 2, 3, 4):
        parts = min(parts, m * tH)
        acc = np.zeros((parts, 3, Wd * K + 1))
        Z2 = np.empty_like(Z)
        kw.convolve_blocks_parallel(A, U, 1, 1, Z2, 1, 1, parts, acc, np.zeros(0, dtype))
        np.testing.assert_array_equal(Z2, Z)
        assert acc[:, 0, -1].sum() == m * H  # every output row counted once
        for got, want in zip(moments(acc, K), (z.mean(axis=0), z.var(axis=0))):
            close(got, want, tol)


def numpy_conv_grads(A, W, dZ, pad_top, pad_left):
    """dW[di, dj, c, k] = sum A[i, h + di - pad_top, w + dj - pad_left, c] dZ[i, h, w, k] and
    dA[i, h + di - pad_top, w + dj - pad_left, c] += dZ[i, h, w, k] W[di, dj, c, k], 0 outside."""
    m, H, Wd, C = A.shape
    _, n_H, n_W, K = dZ.shape
    big = np.zeros((m, n_H + 2 + abs(pad_top) + H + 3, n_W + 2 + abs(pad_left) + Wd + 3, C))
    o_h, o_w = 3 + abs(pad_top), 3 + abs(pad_left)  # where A[0, 0] sits in big
    big[:, o_h:o_h + H, o_w:o_w + Wd] = A
    dW = np.zeros(W.shape)
    dbig = np.zeros_like(big)
    for di in range(3):
        for dj in range(3):
            r, q = o_h + di - pad_top, o_w + dj - pad_left
            window = big[:, r:r + n_H, q:q + n_W]
            dW[di, dj] = np.einsum("ihwc,ihwk->ck", window, dZ)
            dbig[:, r:r + n_H, q:q + n_W] += dZ @ W[di, dj].T
    return dW, dbig[:, o_h:o_h + H, o_w:o_w + Wd]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", [
    (2, 7, 5, 3, 4, 1, 7, 5),     # same, odd sizes: cropped last tiles
    (3, 6, 6, 2, 5, 0, 4, 4),     # valid
    (1, 5, 8, 4, 3, 2, 7, 10),    # padding 2: the output is larger than the input
    (4, 4, 6, 3, 2, 3, 8, 10),    # padding 3: whole tiles over the padding
    (1, 1, 1, 1, 1, 1, 1, 1)])
def test_backward_matches_numpy(m, H, Wd, C, K, pad, n_H, n_W, dtype):
    """Both gradients from Winograd's domain (kernels/winograd_grad.py) against numpy, in
    blocks of one tile row, two, whole examples and several examples, serial and in 1 to 3
    runs of examples."""
    from dlcli.kernels import winograd as kw
    from dlcli.kernels import winograd_grad as kg
    rng = np.random.default_rng(1)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    dZ = rng.standard_normal((m, n_H, n_W, K)).astype(dtype)
    U = np.empty((16, C, K), dtype=dtype)
    kw.filter_transform(W, U)
    eW, eA = numpy_conv_grads(*(x.astype(np.float64) for x in (A, W, dZ)), pad, pad)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    nofold = (np.empty((0, 1, 1, 1), dtype=dtype), dtype(0), np.empty((3, 0), dtype=dtype))
    tH, _ = kw.tiles(n_H, n_W)
    for rows, examples in ((1, 1), (2, 1), (tH, 1), (tH, 2), (tH, 3)):
        for parts in (0, 1, 2, 3):  # 0: the serial driver
            if parts > m:
                continue
            dU = np.full((max(parts, 1), 16, C, K), np.nan, dtype=dtype)
            dA = np.full(A.shape, np.nan, dtype=dtype)
            driver = kg.backward_blocks_parallel if parts else kg.backward_blocks
            none = np.empty((0, 1, 1, 1), dtype=dtype)
            driver(A, dZ, kg.transposed(U), pad, pad, examples, rows, dU, dA, True, none, *nofold)
            dW = np.empty(W.shape, dtype=dtype)
            kg.filter_grad_transform(dU.sum(axis=0), dW)
            close(dW, eW, tol)
            close(dA, eA, tol)
            dU_only = np.full_like(dU, np.nan)  # the filter gradient alone: dA untouched
            untouched = np.zeros((1, 1, 1, 1), dtype=dtype)
            driver(A, dZ, kg.transposed(U), pad, pad, examples, rows, dU_only, untouched, False,
                   none, *nofold)
            np.testing.assert_array_equal(dU_only.sum(axis=0), dU.sum(axis=0))
            assert not untouched.any()
            # an addend (a residual block's shortcut gradient) summed into dA in the same pass
            plus = rng.standard_normal(A.shape).astype(dtype)
            dA_plus = np.full(A.shape, np.nan, dtype=dtype)
            driver(A, dZ, kg.transposed(U), pad, pad, examples, rows, dU_only, dA_plus, True, plus, *nofold)
            close(dA_plus, eA + plus, tol)


@pytest.fixture(params=["F(2x2)", "F(4x4)"])
def everywhere(monkeypatch, request):
    """Every 3x3 stride-1 conv2d takes the Winograd path, whatever its channels and size,
    F(2x2, 3x3) or F(4x4, 3x3) (kernels/winograd4.py), and its passes run in blocks of one
    tile row."""
    from dlcli.kernels import winograd as kw, winograd4 as k4
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(kw, "BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(k4, "BLOCK_ELEMENTS", 1)
    if request.param == "F(4x4)":
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 1)
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_SIDE", 1)
        monkeypatch.setattr(conv_winograd, "FOUR_MAX_PIXELS", 10 ** 9)
    else:
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 10 ** 6)
        monkeypatch.setattr(conv_winograd, "SWAP_MIN", 1)  # W^T by kernels' swap_channels
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,K", [(40, 70), (33, 1), (1, 5), (64, 96)])
def test_swap_channels_matches_numpy(C, K, dtype):
    """The backward's W^T in blocks of 32 x 32 (ragged edges too) against numpy's transpose."""
    from dlcli.kernels import winograd_filters as kf
    W = np.random.default_rng(2).standard_normal((3, 3, C, K)).astype(dtype)
    WT = np.full((3, 3, K, C), np.nan, dtype=dtype)
    kf.swap_channels(W, WT)
    np.testing.assert_array_equal(WT, W.transpose(0, 1, 3, 2))


def test_blocks_of_whole_examples_split_each_share_evenly():
    """A thread's share of the batch in equal blocks of whole examples: no ragged last block."""
    from dlcli.kernels import winograd as kw
    from numba import get_num_threads
    for m, H, Wd, C, K in [(8, 12, 16, 64, 128), (8, 6, 8, 256, 256), (64, 8, 8, 64, 64),
                           (5, 6, 8, 256, 256), (64, 4, 4, 128, 128), (7, 12, 16, 128, 128)]:
        rows, examples = kw.blocks(m, H, Wd, C, K, kw.BLOCK_ELEMENTS)
        share = -(-m // get_num_threads())
        blocks = -(-share // examples)
        assert rows == kw.tiles(H, Wd)[0] and examples * blocks - share < blocks


def test_the_path_is_taken_where_it_applies(monkeypatch):
    from dlcli.nn import conv_split
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", False)  # the stem's split backward
    assert built(Conv2D(32, 3, padding="same"), (8, 8, 32)).winograd
    assert not conv_winograd.four(built(Conv2D(32, 3, padding="same"), (8, 8, 32)))  # small
    assert conv_winograd.four(built(Conv2D(32, 3, padding="same"), (32, 32, 32)))  # resnet_small
    assert not conv_winograd.four(built(Conv2D(16, 3, padding="same"), (32, 32, 32)))
    assert conv_winograd.four(built(Conv2D(32, 3, padding="same"), (48, 64, 32)))  # U-Net's
    assert conv_winograd.four(built(Conv2D(64, 3, padding="same"), (24, 32, 128)))
    assert not conv_winograd.four(built(Conv2D(128, 3, padding="same"), (12, 16, 128)))
    assert not conv_winograd.four(built(Conv2D(32, 3, padding="same"), (64, 64, 32)))  # large
    assert not built(Conv2D(32, 3, padding="same"), (8, 8, 3)).winograd  # few channels
    stem = built(Conv2D(32, 3, padding="same"), (32, 32, 3))  # resnet_small's: F(4x4)
    assert stem.winograd and conv_winograd.four(stem)
    assert not built(Conv2D(16, 3, padding="same"), (32, 32, 3)).winograd  # inception_small's
    unet = built(Conv2D(16, 3, padding="same"), (96, 128, 3))  # the U-Net's: split backward
    assert unet.winograd and unet.split_backward and not conv_winograd.four(unet)
    assert not built(Conv2D(8, 3, padding="same"), (96, 128, 3)).winograd
    assert not built(Conv2D(32, 3, padding="same"), (32, 32, 8)).winograd
    assert not built(Conv2D(32, 3, stride=2, padding="same"), (8, 8, 32)).winograd
    assert not built(Conv2D(32, 5, padding="same"), (8, 8, 32)).winograd


GRID = list(itertools.product((1, 3), (6, 7), ("same", "valid", 2), (3, 4)))


@pytest.mark.torch
@pytest.mark.parametrize("m,n,padding,n_C_prev", GRID)
def test_conv2d_on_winograd_matches_torch(everywhere, m, n, padding, n_C_prev):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(3).standard_normal((m, n, n + 1, n_C_prev))
    layer = built(Conv2D(4, 3, padding=padding, activation="relu"), x.shape[1:])
    assert layer.winograd and conv_winograd.four(layer) == (everywhere == "F(4x4)")
    assert not layer.split_backward and conv_winograd.folds(layer)  # relu's backward in the gather
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(padded(torch, F, tx, 3, 1, padding), tW, tb))
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)  # inference: the same path
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_winograd_gradients_match_finite_differences(everywhere, padding):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 6, 3))
    layer = built(Conv2D(2, 3, padding=padding, bias=False), x.shape[1:])
    assert layer.winograd
    dy = rng.standard_normal((2,) + layer.output_shape)

    def cost():
        return float(np.sum(layer.forward(x, False) * dy))

    layer.forward(x, True)
    dx = layer.backward(dy)
    close(dx, numerical_grad(cost, x), 1e-7)
    close(layer.grads["W"], numerical_grad(cost, layer.params["W"]), 1e-7)


def test_first_layer_on_winograd_skips_the_input_gradient(everywhere):
    x = np.random.default_rng(6).standard_normal((2, 6, 6, 4))
    full, first = (built(Conv2D(3, 3, padding="same"), x.shape[1:]) for _ in range(2))
    first.needs_input_grad = False
    _, _, dx = run(full, x)
    _, _, none = run(first, x)
    assert dx.shape == x.shape and none is None
    np.testing.assert_array_equal(first.grads["W"], full.grads["W"])


@pytest.mark.parametrize("side", [8, 32])
def test_float32_on_winograd_agrees_with_the_unrolling(monkeypatch, side):
    """resnet_small's layer in float32: the Winograd path (F(2x2) at 8x8, F(4x4) at 32x32)
    and im2col + GEMM agree to float32 rounding, forward and backward."""
    x = np.random.default_rng(7).standard_normal((3, side, side, 32)).astype(np.float32)
    fast = built(Conv2D(32, 3, padding="same"), x.shape[1:], np.float32)
    assert fast.winograd and conv_winograd.four(fast) == (side == 32)
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 10 ** 6)
    monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 10 ** 6)
    slow = built(Conv2D(32, 3, padding="same"), x.shape[1:], np.float32)
    assert not slow.winograd
    for a, b in zip(run(fast, x), run(slow, x)):
        close(a, b, 1e-5)
    close(fast.grads["W"], slow.grads["W"], 1e-5)


def test_stem_on_f4x4_agrees_with_the_direct_kernels(monkeypatch):
    """resnet_small's stem (32x32x3 -> 32, no input gradient) in float32: F(4x4) and the
    direct kernels (kernels/direct.py) it replaces agree to float32 rounding."""
    x = np.random.default_rng(9).standard_normal((2, 32, 32, 3)).astype(np.float32)
    fast = built(Conv2D(32, 3, padding="same", bias=False), x.shape[1:], np.float32)
    monkeypatch.setattr(conv_winograd, "FOUR_STEM_CHANNELS", 0)
    slow = built(Conv2D(32, 3, padding="same", bias=False), x.shape[1:], np.float32)
    monkeypatch.undo()
    assert conv_winograd.four(fast) and not slow.winograd and slow.direct
    slow.params["W"][:] = fast.params["W"]
    for layer in (fast, slow):
        layer.needs_input_grad = False
    (y1, _, dx1), (y2, _, dx2) = run(fast, x), run(slow, x)
    close(y1, y2, 1e-5)
    assert dx1 is None and dx2 is None
    close(fast.grads["W"], slow.grads["W"], 1e-5)

@pytest.mark.parametrize("small_matrix_blas", [False, True], ids=["split", "domain"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_large_stem_on_winograd_agrees_with_the_direct_kernels(monkeypatch, activation,
                                                                small_matrix_blas):
    """The U-Net's first layer (96x128x3 -> 16, no input gradient; nn/conv_paths.py
    `_large_stem`) in float32: the Winograd forward with the split backward (or Winograd's
    domain, nn/conv_split.py `taken`) and the direct kernels it replaces agree to float32
    rounding."""
    from dlcli.nn import conv_paths, conv_split
    x = np.random.default_rng(10).standard_normal((2, 96, 128, 3)).astype(np.float32)
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", small_matrix_blas)
    fast = built(Conv2D(16, 3, padding="same", activation=activation), x.shape[1:], np.float32)
    monkeypatch.setattr(conv_paths, "STEM_CHANNELS", 0)
    slow = built(Conv2D(16, 3, padding="same", activation=activation), x.shape[1:], np.float32)
    monkeypatch.undo()
    assert fast.winograd and fast.split_backward != small_matrix_blas
    assert not slow.winograd and slow.direct
    for layer in (fast, slow):
        layer.needs_input_grad = False
    y1 = fast.forward(x, True)
    y2 = slow.forward(x, True)
    close(y1, y2, 1e-5)
    # one upstream gradient, zero where either side's relu mask could differ by rounding
    dy = np.random.default_rng(11).standard_normal(y1.shape).astype(np.float32)
    dy[np.minimum(np.abs(y1), np.abs(y2)) < 1e-3] = 0
    assert fast.backward(dy) is None and slow.backward(dy) is None
    close(fast.grads["W"], slow.grads["W"], 1e-5)
    close(fast.grads["b"], slow.grads["b"], 1e-5)


def test_pointwise_path_is_taken_for_unpadded_1x1_only():
    assert built(Conv2D(8, 1), (5, 5, 4)).pointwise
    assert built(Conv2D(8, 1, padding="same"), (5, 5, 4)).pointwise
    assert not built(Conv2D(8, 1, padding=1), (5, 5, 4)).pointwise
    assert built(Conv2D(8, 1, stride=2), (5, 5, 4)).pointwise  # the input subsampled
    assert built(Conv2D(8, 1, stride=3, padding="same"), (5, 5, 4)).pointwise
    assert not built(Conv2D(8, 1, stride=2, padding=1), (5, 5, 4)).pointwise
    assert not built(Conv2D(8, 1), (5, 5, 1)).pointwise  # few channels: the direct kernels


@pytest.mark.parametrize("activation,bias", [("relu", True), ("linear", False)])
def test_pointwise_gradients_match_finite_differences(activation, bias):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5, 3))
    layer = built(Conv2D(2, 1, activation=activation, bias=bias), x.shape[1:])
    assert layer.pointwise
    dy = rng.standard_normal((3,) + layer.output_shape)

    def cost():
        return float(np.sum(layer.forward(x, False) * dy))

    layer.forward(x, True)
    dx = layer.backward(dy)
    close(dx, numerical_grad(cost, x), 1e-7)
    for key in layer.params:
        close(layer.grads[key], numerical_grad(cost, layer.params[key]), 1e-7)
