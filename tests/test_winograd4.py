"""Winograd F(4x4, 3x3) (kernels/winograd4.py, kernels/winograd4_grad.py): the kernels against
a numpy convolution and its gradients, in every block shape and driver. The conv2d layer on
this path runs tests/test_winograd.py's PyTorch grid and finite differences (its `everywhere`
fixture takes both variants)."""

import numpy as np
import pytest

from test_conv import close
from test_winograd import numpy_conv, numpy_conv_grads

NO_MOMENTS = np.zeros((3, 3, 0))

SHAPES = [(2, 7, 5, 3, 4, 1, 7, 5),      # same, odd sizes: cropped last tiles
          (3, 6, 6, 2, 5, 0, 4, 4),      # valid
          (1, 5, 8, 4, 3, 2, 7, 10),     # padding 2: the output larger than the input
          (4, 4, 6, 3, 2, 3, 8, 10),     # padding 3: whole tiles over the padding
          (2, 4, 4, 5, 2, -1, 2, 2),     # a negative pad: the input cropped
          (2, 12, 9, 3, 2, 1, 12, 9),    # several tile rows, a cropped last column
          (1, 22, 5, 2, 3, 1, 22, 5),    # 6 tile rows: the input rows' ring (6 slots) twice round
          (1, 1, 1, 1, 1, 1, 1, 1)]


def _transformed(W):
    from dlcli.kernels import winograd4 as k4
    U = np.empty((36,) + W.shape[2:], dtype=W.dtype)
    k4.filter_transform(W, U)
    return U


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", SHAPES)
def test_convolve_matches_numpy(m, H, Wd, C, K, pad, n_H, n_W, dtype):
    from dlcli.kernels import winograd4 as k4
    rng = np.random.default_rng(0)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    U = _transformed(W)
    expected = numpy_conv(A.astype(np.float64), W.astype(np.float64), pad, pad, n_H, n_W)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    tH, tW = k4.tiles(n_H, n_W)
    for rows in (1, 2, tH):  # blocks of one tile row, two, whole examples
        Z = k4.convolve(A, U, pad, pad, np.full((m, n_H, n_W, K), np.nan, dtype=dtype),
                        rows * 36 * tW * max(C, K))
        close(Z, expected, tol)
        Z1 = np.full_like(Z, np.nan)
        k4.convolve_blocks(A, U, pad, pad, Z1, rows, 1, 1, NO_MOMENTS, np.zeros(0, dtype))
        for parts in (1, 2, 3):  # runs of blocks in parallel: the same numbers
            Z2 = np.full_like(Z1, np.nan)
            k4.convolve_blocks_parallel(A, U, pad, pad, Z2, rows, 1,
                                        min(parts, m * -(-tH // rows)), NO_MOMENTS, np.zeros(0, dtype))
            np.testing.assert_array_equal(Z1, Z2)
    for examples in (2, 3):  # several whole examples a block
        Z2 = np.full((m, n_H, n_W, K), np.nan, dtype=dtype)
        k4.convolve_blocks_parallel(A, U, pad, pad, Z2, tH, examples, 1, NO_MOMENTS, np.zeros(0, dtype))
        close(Z2, expected, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolve_takes_the_batch_moments_of_z(dtype):
    from dlcli.kernels import winograd4 as k4
    rng = np.random.default_rng(2)
    A = (rng.standard_normal((5, 9, 8, 3)) + 100.0).astype(dtype)
    U = _transformed(rng.standard_normal((3, 3, 3, 6)).astype(dtype))
    Z, mean, var = k4.convolve(A, U, 1, 1, np.empty((5, 9, 8, 6), dtype=dtype), 1, moments=True)
    z = Z.astype(np.float64).reshape(-1, 6)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    close(mean, z.mean(axis=0), tol)
    close(var, z.var(axis=0), tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", SHAPES)
def test_backward_matches_numpy(m, H, Wd, C, K, pad, n_H, n_W, dtype):
    """Both gradients in F(4x4)'s domain against numpy: blocks of one tile row, two, whole
    examples and several, serial and in 1 to 3 runs; with an addend; dW alone."""
    from dlcli.kernels import winograd4 as k4, winograd4_grad as g4
    from dlcli.kernels.winograd_grad import transposed
    rng = np.random.default_rng(1)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    dZ = rng.standard_normal((m, n_H, n_W, K)).astype(dtype)
    UT = transposed(_transformed(W))
    eW, eA = numpy_conv_grads(*(x.astype(np.float64) for x in (A, W, dZ)), pad, pad)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    none = np.empty((0, 1, 1, 1), dtype=dtype)
    nofold = (np.empty((0, 1, 1, 1), dtype=dtype), dtype(0), np.empty((3, 0), dtype=dtype))
    tH, _ = k4.tiles(n_H, n_W)
    for rows, examples in ((1, 1), (2, 1), (tH, 1), (tH, 2), (tH, 3)):
        for parts in (0, 1, 2, 3):  # 0: the serial driver
            if parts > m:
                continue
            driver = g4.backward_blocks_parallel if parts else g4.backward_blocks
            dU = np.full((max(parts, 1), 36, C, K), np.nan, dtype=dtype)
            dA = np.full(A.shape, np.nan, dtype=dtype)
            driver(A, dZ, UT, pad, pad, examples, rows, dU, dA, True, none, *nofold)
            dW = np.empty(W.shape, dtype=dtype)
            g4.filter_grad_transform(dU.sum(axis=0), dW)
            close(dW, eW, tol)
            close(dA, eA, tol)
            plus = rng.standard_normal(A.shape).astype(dtype)
            dA_plus = np.full(A.shape, np.nan, dtype=dtype)
            driver(A, dZ, UT, pad, pad, examples, rows, dU, dA_plus, True, plus, *nofold)
            close(dA_plus, eA + plus, tol)
            dU_only = np.full_like(dU, np.nan)
            untouched = np.zeros((1, 1, 1, 1), dtype=dtype)
            driver(A, dZ, UT, pad, pad, examples, rows, dU_only, untouched, False, none, *nofold)
            np.testing.assert_array_equal(dU_only, dU)
            assert not untouched.any()


@pytest.mark.parametrize("variant", ["F(2x2)", "F(4x4)"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", [SHAPES[0], SHAPES[2], SHAPES[5]])
def test_the_output_transform_applies_bias_and_activation(m, H, Wd, C, K, pad, n_H, n_W,
                                                          activation, dtype, variant):
    """kernels/winograd_tiles.py's epilogue: g(conv + b) against numpy, and in float32 the same
    bits as the convolution followed by kernels/activations.py's pass (what it replaces)."""
    from dlcli.kernels import winograd as k2, winograd4 as k4
    from dlcli.nn import activations
    kw = k4 if variant == "F(4x4)" else k2
    rng = np.random.default_rng(K * n_W)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    U = np.empty((kw.P, C, K), dtype=dtype)
    kw.filter_transform(W, U)
    slope = {"relu": 0.0, "leaky_relu": 0.01, "linear": 1.0}[activation]
    z = numpy_conv(A.astype(np.float64), W.astype(np.float64), pad, pad, n_H, n_W) + b
    expected = np.where(z > 0, z, z * slope)
    epilogue = np.append(b, slope).astype(dtype)
    tH, tW = kw.tiles(n_H, n_W)
    for rows in (1, tH):
        block = rows * kw.P * tW * max(C, K)
        got = kw.convolve(A, U, pad, pad, np.full((m, n_H, n_W, K), np.nan, dtype=dtype), block,
                          epilogue=epilogue)
        close(got, expected, 1e-12 if dtype == np.float64 else 1e-5)
        Z = kw.convolve(A, U, pad, pad, np.full((m, n_H, n_W, K), np.nan, dtype=dtype), block)
        apart = activations.forward(activation, Z, b)
        np.testing.assert_array_equal(got, apart)
        parts = min(2, m * -(-tH // rows))
        Z2 = np.full_like(got, np.nan)
        kw.convolve_blocks_parallel(A, U, pad, pad, Z2, rows, 1, parts, NO_MOMENTS, epilogue)
        np.testing.assert_array_equal(Z2, got)


@pytest.mark.parametrize("variant", ["F(2x2)", "F(4x4)"])
@pytest.mark.parametrize("activation,bias", [("relu", True), ("leaky_relu", True),
                                             ("linear", True), ("relu", False)])
def test_conv2d_activated_in_the_output_transform_agrees_with_the_pass_after(
        monkeypatch, variant, activation, bias):
    """nn/conv_winograd.py `activates`: the layer's output, its input gradient and its filter
    and bias gradients, float32, the same bits with the epilogue as with kernels/activations.py's
    pass after the convolution (in float64, the relu layers of tests/test_winograd.py's and
    tests/test_conv_split.py's PyTorch grids take the epilogue)."""
    from dlcli.nn import conv_winograd
    from dlcli.nn.conv import Conv2D
    from test_conv import built, run
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    if variant == "F(4x4)":
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 1)
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_SIDE", 1)
        monkeypatch.setattr(conv_winograd, "FOUR_MAX_PIXELS", 10 ** 9)
    x = np.random.default_rng(8).standard_normal((3, 9, 10, 4))
    outs = {}
    for fused in (True, False):
        monkeypatch.setattr(conv_winograd, "EPILOGUE", fused)
        layer = built(Conv2D(5, 3, padding="same", activation=activation, bias=bias), x.shape[1:],
                      dtype="float32")
        assert layer.winograd and conv_winograd.four(layer) == (variant == "F(4x4)")
        assert conv_winograd.activates(layer, True) == (activation != "linear" or bias)
        y, dy, dx = run(layer, x.astype(np.float32))
        outs[fused] = (y.copy(), dx.copy(), layer.grads["W"].copy(),
                       layer.grads["b"].copy() if bias else None,
                       layer.forward(x.astype(np.float32), False).copy())
    for got, want in zip(outs[True], outs[False]):
        if want is not None:
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("variant", ["F(2x2)", "F(4x4)"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.0, 0.01])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", [SHAPES[0], SHAPES[2], SHAPES[5]])
def test_backward_takes_dZ_from_the_activation_in_the_gather(m, H, Wd, C, K, pad, n_H, n_W,
                                                             slope, dtype, variant):
    """kernels/winograd_tiles.py `gather_tile_row` with dA and A given: dZ = dA g'(Z) (relu,
    leaky relu) and db made as dZ's tiles are gathered. Both gradients and db against numpy,
    serial and in 1 to 3 runs; and the same bits as the backward of the dZ that
    kernels/activations.py's pass makes (what it replaces)."""
    from dlcli.kernels import winograd as k2, winograd_grad as g2, winograd4 as k4, winograd4_grad as g4
    from dlcli.kernels.winograd_grad import transposed
    from dlcli.nn import activations
    kw, kg = (k4, g4) if variant == "F(4x4)" else (k2, g2)
    rng = np.random.default_rng(C * n_W + 1)
    A_prev = rng.standard_normal((m, H, Wd, C)).astype(dtype)
    W = rng.standard_normal((3, 3, C, K)).astype(dtype)
    dA, Z = (rng.standard_normal((m, n_H, n_W, K)).astype(dtype) for _ in range(2))
    A = np.where(Z > 0, Z, Z * dtype(slope)).astype(dtype)
    dZ = activations.backward("relu" if slope == 0 else "leaky_relu", dA, A)
    U = np.empty((kw.P, C, K), dtype=dtype)
    kw.filter_transform(W, U)
    UT = transposed(U)
    exact = np.where(Z > 0, dA.astype(np.float64), dA.astype(np.float64) * slope)
    eW, eA = numpy_conv_grads(A_prev.astype(np.float64), W.astype(np.float64), exact, pad, pad)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    none = np.empty((0, 1, 1, 1), dtype=dtype)
    tH, _ = kw.tiles(n_H, n_W)
    for rows, examples in ((1, 1), (tH, 1), (tH, 2)):
        for parts in (0, 1, 2, 3):  # 0: the serial driver
            if parts > m:
                continue
            driver = kg.backward_blocks_parallel if parts else kg.backward_blocks
            n = max(parts, 1)
            dU, dU_want = (np.full((n, kw.P, C, K), np.nan, dtype=dtype) for _ in range(2))
            dx, dx_want = (np.full(A_prev.shape, np.nan, dtype=dtype) for _ in range(2))
            db = np.full((n, K), np.nan, dtype=dtype)
            driver(A_prev, dA, UT, pad, pad, examples, rows, dU, dx, True, none, A,
                   dtype(slope), db)
            driver(A_prev, dZ, UT, pad, pad, examples, rows, dU_want, dx_want, True, none,
                   none, dtype(0), np.empty((n, 0), dtype=dtype))
            np.testing.assert_array_equal(dU, dU_want)
            np.testing.assert_array_equal(dx, dx_want)
            dW = np.empty(W.shape, dtype=dtype)
            kg.filter_grad_transform(dU.sum(axis=0), dW)
            close(dW, eW, tol)
            close(dx, eA, tol)
            close(db.sum(axis=0), exact.sum(axis=(0, 1, 2)), tol)


@pytest.mark.parametrize("variant", ["F(2x2)", "F(4x4)"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation,bias", [("relu", True), ("leaky_relu", True),
                                             ("relu", False), ("linear", True)])
def test_conv2d_with_dZ_in_the_gather_agrees_with_the_pass_before(
        monkeypatch, variant, dtype, activation, bias):
    """nn/conv_winograd.py `backward_activation` against kernels/activations.py's pass before
    the Winograd-domain backward: the same dZ, so the same dA_prev and dW bits; db within
    rounding (summed in another order). In float64 against PyTorch: tests/test_winograd.py's
    grid, whose relu layers take it."""
    from dlcli.nn import conv_winograd
    from dlcli.nn.conv import Conv2D
    from test_conv import built, run
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    if variant == "F(4x4)":
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 1)
        monkeypatch.setattr(conv_winograd, "FOUR_MIN_SIDE", 1)
        monkeypatch.setattr(conv_winograd, "FOUR_MAX_PIXELS", 10 ** 9)
    x = np.random.default_rng(9).standard_normal((3, 9, 10, 4)).astype(dtype)
    outs = {}
    for fold in (True, False):
        monkeypatch.setattr(conv_winograd, "FOLD", fold)
        layer = built(Conv2D(5, 3, padding="same", activation=activation, bias=bias), x.shape[1:],
                      dtype=np.dtype(dtype).name)
        assert layer.winograd and not layer.split_backward
        assert conv_winograd.four(layer) == (variant == "F(4x4)")
        assert conv_winograd.folds(layer) == (fold and activation != "linear")
        y, dy, dx = run(layer, x)
        outs[fold] = (dx.copy(), layer.grads["W"].copy(),
                      layer.grads["b"].copy() if bias else None)
    np.testing.assert_array_equal(outs[True][0], outs[False][0])
    np.testing.assert_array_equal(outs[True][1], outs[False][1])
    if bias:
        close(outs[True][2], outs[False][2], 1e-12 if dtype == np.float64 else 1e-5)
