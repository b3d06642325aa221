"""Conv2D's split Winograd backward (nn/conv_split.py: dW by kernels/filter_grad.py's dot
products on channel-major blocks of rows, dA_prev a Winograd convolution of dZ with the rotated
filter): against PyTorch in float64 over the Winograd grid, against finite differences, its
drivers and blocks against each other, and the rule that picks it."""

import itertools

import numpy as np
import pytest

from conftest import numerical_grad
from dlcli.kernels import filter_grad as kf
from dlcli.kernels import winograd as kw
from dlcli.nn import conv_split, conv_winograd
from dlcli.nn.conv import Conv2D
from test_conv import built, close, nchw, nhwc, oracle, padded, run


@pytest.fixture(params=itertools.product([1, 10 ** 6], ["F(2x2)", "F(4x4)"]),
                ids=lambda p: ("row-blocks" if p[0] == 1 else "whole-images") + "-" + p[1])
def split(monkeypatch, request):
    """Every 3x3 stride-1 conv2d takes Winograd's forward and the split backward, its filter
    gradient in blocks of one row or of whole images, its forward and input gradient
    F(2x2, 3x3) or F(4x4, 3x3)."""
    rows, variant = request.param
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_split, "SPLIT_MAX_FILTERS", 10 ** 6)
    monkeypatch.setattr(conv_split, "SPLIT_MIN_PIXELS", 0)
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", False)  # whatever this machine's BLAS
    monkeypatch.setattr(conv_split, "FOUR_MIN_CHANNELS", 1 if variant == "F(4x4)" else 10 ** 6)
    monkeypatch.setattr(kf, "BLOCK_PIXELS", rows)
    return variant


def test_the_split_backward_is_taken_for_few_filters_on_large_images(monkeypatch):
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", False)  # OpenBLAS packing every operand
    assert built(Conv2D(16, 3, padding="same"), (96, 128, 32)).split_backward
    assert not built(Conv2D(32, 3, padding="same"), (96, 128, 32)).split_backward  # filters
    assert not built(Conv2D(16, 3, padding="same"), (48, 64, 32)).split_backward  # pixels
    assert not built(Conv2D(16, 3, padding="same"), (96, 128, 8)).split_backward  # no Winograd
    # an image's channels (the U-Net's first layer): Winograd forward, split backward
    assert built(Conv2D(16, 3, padding="same"), (96, 128, 3)).split_backward
    # the U-Net's top layers: forward and input gradient on F(4x4), the first layer F(2x2)
    assert conv_winograd.four(built(Conv2D(16, 3, padding="same"), (96, 128, 32)))
    assert conv_winograd.four(built(Conv2D(16, 3, padding="same"), (96, 128, 16)))
    assert not conv_winograd.four(built(Conv2D(16, 3, padding="same"), (96, 128, 3)))
    assert not built(Conv2D(16, 3, padding="same"), (32, 32, 3)).winograd  # inception_small's


def test_a_blas_with_a_small_matrix_path_keeps_those_layers_in_winograds_domain(monkeypatch):
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", True)  # OpenBLAS's AVX-512 kernels
    for n_C_prev in (3, 16, 32):
        layer = built(Conv2D(16, 3, padding="same", activation="relu"), (96, 128, n_C_prev))
        assert layer.winograd and not layer.split_backward and conv_winograd.folds(layer)
        # the forward and both gradients on F(4x4) as the split's forward was, but the stem
        assert conv_winograd.four(layer) == (n_C_prev >= conv_split.FOUR_MIN_CHANNELS)


def test_the_blas_is_asked_once_which_backward_pays(monkeypatch):
    from dlcli.kernels import small_gemm
    asked = []
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", None)
    monkeypatch.setattr(small_gemm, "small_matrix_path", lambda: asked.append(1) or True)
    assert not conv_split.taken(96, 128, 16) and not conv_split.taken(96, 128, 8)
    assert asked == [1] and conv_split.SMALL_MATRIX_BLAS is True
    assert not conv_split.taken(48, 64, 16)  # not a shape it was made for: nothing asked


GRID = list(itertools.product((1, 3), (6, 7), ("same", "valid", 2), (3, 4)))


@pytest.mark.torch
@pytest.mark.parametrize("m,n,padding,n_C_prev", GRID)
def test_conv2d_with_the_split_backward_matches_torch(split, m, n, padding, n_C_prev):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(3).standard_normal((m, n, n + 1, n_C_prev))
    layer = built(Conv2D(4, 3, padding=padding, activation="relu"), x.shape[1:])
    assert layer.winograd and layer.split_backward
    assert conv_winograd.four(layer) == (split == "F(4x4)")
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(padded(torch, F, tx, 3, 1, padding), tW, tb))
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_split_gradients_match_finite_differences(split, padding):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 6, 3))
    layer = built(Conv2D(2, 3, padding=padding, bias=False), x.shape[1:])
    assert layer.split_backward
    dy = rng.standard_normal((2,) + layer.output_shape)

    def cost():
        return float(np.sum(layer.forward(x, False) * dy))

    layer.forward(x, True)
    dx = layer.backward(dy)
    close(dx, numerical_grad(cost, x), 1e-7)
    close(layer.grads["W"], numerical_grad(cost, layer.params["W"]), 1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_runs_and_the_first_layer_agree_with_the_serial_pass(split, monkeypatch, dtype):
    x = np.random.default_rng(6).standard_normal((5, 7, 6, 4)).astype(dtype)
    serial, parallel, first = (built(Conv2D(3, 3, padding="same"), x.shape[1:], dtype)
                               for _ in range(3))
    expected = run(serial, x)
    monkeypatch.setattr(kw, "PARALLEL_MIN", 0)
    got = run(parallel, x)
    first.needs_input_grad = False
    _, _, none = run(first, x)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(got, expected):
        close(a, b, tol)
    close(parallel.grads["W"], serial.grads["W"], tol)
    assert none is None
    close(first.grads["W"], serial.grads["W"], tol)


def numpy_filter_grad(A, dZ, pad):
    m, H, W, C = A.shape
    _, n_H, n_W, K = dZ.shape
    Ap = np.zeros((m, max(H + 2 * pad, n_H + 2), max(W + 2 * pad, n_W + 2), C))
    Ap[:, pad:pad + H, pad:pad + W] = A
    return np.stack([np.stack([np.einsum("mhwc,mhwk->ck", Ap[:, di:di + n_H, dj:dj + n_W], dZ)
                               for dj in range(3)]) for di in range(3)])


FILTER_GRID = [(2, 5, 6, 3, 4, 1), (3, 1, 1, 2, 2, 1), (2, 4, 1, 2, 3, 1), (1, 1, 5, 2, 2, 1),
               (2, 6, 7, 3, 2, 0), (1, 5, 5, 2, 2, 2), (2, 7, 9, 4, 5, 1), (3, 3, 2, 1, 1, 1)]


@pytest.mark.parametrize("m,H,W,C,K,pad", FILTER_GRID)
@pytest.mark.parametrize("rows", [1, 2, 3, 100])
def test_filter_grad_kernels_match_numpy(m, H, W, C, K, pad, rows):
    """kernels/filter_grad.py, serial and parallel, against numpy: one-pixel rows and
    columns, valid and wide padding (a row a GEMM), blocks of 1-3 rows and whole images."""
    rng = np.random.default_rng(H * W + C)
    A = rng.standard_normal((m, H, W, C))
    dZ = rng.standard_normal((m, H + 2 * pad - 2, W + 2 * pad - 2, K))
    want = numpy_filter_grad(A, dZ, pad)
    none, zero = np.empty((0, 1, 1, 1)), np.float64(0)
    serial = np.full((1, 3, 3, C, K), np.nan)
    kf.filter_grad(A, dZ, pad, pad, rows, serial, none, none, zero, np.empty((1, 0)))
    close(serial[0], want, 1e-12)
    parallel = np.full((2, 3, 3, C, K), np.nan)
    kf.filter_grad_parallel(A, dZ, pad, pad, rows, parallel, none, none, zero, np.empty((2, 0)))
    close(parallel.sum(axis=0), want, 1e-12)


@pytest.mark.parametrize("m,H,W,C,K,pad", FILTER_GRID)
@pytest.mark.parametrize("rows", [1, 2, 3, 100])
def test_filter_grad_reads_and_writes_only_inside_its_buffers(monkeypatch, m, H, W, C, K, pad,
                                                              rows):
    """The serial kernel run as Python (its helpers' own functions, `py_func`) on numpy arrays,
    which raise IndexError where compiled code would read past a buffer's end: a block's
    last shift (2 rows and 2 columns on) ends at its channel's last element, with every block
    size, padding and remainder of the dot products' tiles (K odd, 9 C not a multiple of 4)."""
    for name in ("_filter_dots", "_geometry", "_copy_input", "_copy_dZ", "_grad_run"):
        monkeypatch.setattr(kf, name, getattr(kf, name).py_func)
    rng = np.random.default_rng(H * W + C + 2)
    A = rng.standard_normal((m, H, W, C))
    dZ = rng.standard_normal((m, H + 2 * pad - 2, W + 2 * pad - 2, K))
    none = np.empty((0, 1, 1, 1))
    dW = np.full((1, 3, 3, C, K), np.nan)
    kf.filter_grad.py_func(A, dZ, pad, pad, rows, dW, none, none, np.float64(0), np.empty((1, 0)))
    close(dW[0], numpy_filter_grad(A, dZ, pad), 1e-12)


@pytest.mark.parametrize("m,H,W,C,K,pad", FILTER_GRID[:1] + FILTER_GRID[5:7])
@pytest.mark.parametrize("rows", [1, 2, 100])
@pytest.mark.parametrize("slope", [0.0, 0.01])
def test_filter_grad_kernels_take_dZ_from_the_activation(m, H, W, C, K, pad, rows, slope):
    """kernels/filter_grad.py with dA and A given: dZ = dA g'(Z) (relu, leaky relu) written
    before its GEMMs read it, db its sums, dW from it, serial and parallel, against numpy."""
    rng = np.random.default_rng(H * W + C + 1)
    A_prev = rng.standard_normal((m, H, W, C))
    shape = (m, H + 2 * pad - 2, W + 2 * pad - 2, K)
    dA, Z = rng.standard_normal(shape), rng.standard_normal(shape)
    A = np.where(Z > 0, Z, Z * slope)
    dZ_want = np.where(Z > 0, dA, dA * slope)
    want = numpy_filter_grad(A_prev, dZ_want, pad)
    for kernel, parts in ((kf.filter_grad, 1), (kf.filter_grad_parallel, 2)):
        dZ, dW = np.full(shape, np.nan), np.full((parts, 3, 3, C, K), np.nan)
        db = np.full((parts, K), np.nan)
        kernel(A_prev, dZ, pad, pad, rows, dW, dA, A, np.float64(slope), db)
        close(dZ, dZ_want, 1e-15)
        close(dW.sum(axis=0), want, 1e-12)
        close(db.sum(axis=0), dZ_want.sum(axis=(0, 1, 2)), 1e-12)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_backward_with_dZ_in_the_filter_pass_agrees_with_the_pass_before(
        split, monkeypatch, activation, dtype):
    """nn/conv_split.py `backward_activation` against kernels/activations.py's pass before
    the split backward: the same dZ, so the same dA_prev bits; dW and db within rounding (db
    summed in another order). The relu layer against PyTorch: the grid above."""
    x = np.random.default_rng(4).standard_normal((3, 8, 9, 4)).astype(dtype)
    got = {}
    for fold in (True, False):
        monkeypatch.setattr(conv_split, "ACTIVATION", fold)
        layer = built(Conv2D(3, 3, padding="same", activation=activation), x.shape[1:],
                      dtype=dtype)
        assert layer.split_backward and conv_split.folds(layer) == (fold and activation != "linear")
        y, dy, dx = run(layer, x)
        got[fold] = (dx.copy(), layer.grads["W"].copy(), layer.grads["b"].copy())
    np.testing.assert_array_equal(got[True][0], got[False][0])
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(got[True][1:], got[False][1:]):
        close(a, b, tol)


# -- whole-example Winograd blocks (nn/conv_paths.py `winograd_block`) --------------------------
def test_whole_example_blocks_are_chosen_where_an_example_fills_one_to_two_blocks():
    assert kw.BLOCK_ELEMENTS == 1 << 17  # the U-Net figures below assume it
    assert built(Conv2D(128, 3, padding="same"), (12, 16, 256)).winograd_block == 6 * 8 * 16 * 256
    assert built(Conv2D(64, 3, padding="same"), (24, 32, 64)).winograd_block == 12 * 16 * 16 * 64
    assert built(Conv2D(64, 3, padding="same"), (24, 32, 128)).winograd_block is None  # 3 blocks
    assert built(Conv2D(128, 3, padding="same"), (12, 16, 128)).winograd_block is None  # 1 block
    assert built(Conv2D(16, 3, padding="same"), (96, 128, 16)).winograd_block is None


BLOCK_GRID = list(itertools.product((1, 3, 5), (6, 7), ("same", "valid", 2), (3, 9)))


@pytest.mark.torch
@pytest.mark.parametrize("m,n,padding,n_C_prev", BLOCK_GRID)
def test_conv2d_in_whole_example_blocks_matches_torch(monkeypatch, m, n, padding, n_C_prev):
    """BLOCK_ELEMENTS lowered so that an example's tiles just overflow one block: the layer
    takes blocks of whole examples (several when max(C, K) exceeds an example's tiles),
    forward and backward, against PyTorch in float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(kw, "PARALLEL_MIN", 0)
    x = np.random.default_rng(3).standard_normal((m, n, n + 1, n_C_prev))
    K = 8
    probe = built(Conv2D(K, 3, padding=padding), x.shape[1:])
    tiles = np.prod(kw.tiles(probe.n_H, probe.n_W))
    monkeypatch.setattr(kw, "BLOCK_ELEMENTS", tiles * 16 * max(n_C_prev, K) - 1)
    layer = built(Conv2D(K, 3, padding=padding, activation="relu"), x.shape[1:])
    assert layer.winograd and not layer.split_backward
    assert layer.winograd_block == tiles * 16 * max(n_C_prev, K)
    rows, examples = kw.blocks(m, layer.n_H, layer.n_W, n_C_prev, K, layer.winograd_block)
    assert rows == kw.tiles(layer.n_H, layer.n_W)[0]
    from numba import get_num_threads
    assert examples == max(1, min(-(-max(n_C_prev, K) // tiles), -(-m // get_num_threads())))
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(padded(torch, F, tx, 3, 1, padding), tW, tb))
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)
