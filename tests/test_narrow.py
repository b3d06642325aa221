"""The narrow 1x1 path (kernels/narrow.py, nn/conv_narrow.py): the blocked GEMMs against
numpy, and conv2d layers on it (the U-Net's 16 -> 10 head in small) against PyTorch in
float64."""

import numpy as np
import pytest

from dlcli.nn import conv_narrow
from dlcli.nn.conv import Conv2D
from test_conv import built, close, nchw, nhwc, oracle, run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,C,K", [(1024, 16, 10), (2500, 3, 7), (5, 16, 16), (1, 1, 1)])
def test_blocked_gemms_match_numpy(n, C, K, dtype):
    """Z = P W + b; dW = P^T dZ and dP = dZ W^T, with a ragged last block (2500) and fewer
    pixels than a block; dP untouched without an input gradient."""
    from dlcli.kernels import narrow
    rng = np.random.default_rng(n + C)
    P, W = rng.standard_normal((n, C)).astype(dtype), rng.standard_normal((C, K)).astype(dtype)
    b, dZ = rng.standard_normal(K).astype(dtype), rng.standard_normal((n, K)).astype(dtype)
    P64, W64, dZ64 = (a.astype(np.float64) for a in (P, W, dZ))
    tol = 1e-12 if dtype == np.float64 else 1e-4
    Z = np.full((n, K), np.nan, dtype=dtype)
    narrow.forward_blocks(P, W, b, Z)
    np.testing.assert_allclose(Z, P64 @ W64 + b, rtol=tol, atol=tol)
    dW, dP = np.full((C, K), np.nan, dtype=dtype), np.full((n, C), np.nan, dtype=dtype)
    narrow.backward_blocks(P, dZ, np.ascontiguousarray(W.T), dW, dP, True)
    np.testing.assert_allclose(dW, P64.T @ dZ64, rtol=tol, atol=tol * np.sqrt(n))
    np.testing.assert_allclose(dP, dZ64 @ W64.T, rtol=tol, atol=tol)
    untouched = np.zeros((1, C), dtype=dtype)
    narrow.backward_blocks(P, dZ, np.ascontiguousarray(W.T), dW, untouched, False)
    np.testing.assert_allclose(dW, P64.T @ dZ64, rtol=tol, atol=tol * np.sqrt(n))
    assert not untouched.any()


@pytest.mark.torch
@pytest.mark.parametrize("shape,activation,bias", [((3, 40, 35, 16), "linear", True),
                                                   ((2, 64, 33, 5), "relu", True),
                                                   ((1, 70, 60, 16), "linear", False)])
def test_narrow_1x1_layer_matches_torch(shape, activation, bias):
    """Enough pixels for the blocked path (4200: a ragged last block), linear (Z = A in one
    pass) or relu (the blocked backward only), with and without a bias."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(4).standard_normal(shape)
    layer = built(Conv2D(10, 1, activation=activation, bias=bias), x.shape[1:])
    if bias:
        layer.params["b"][:] = np.random.default_rng(5).standard_normal(10)
    assert conv_narrow.applies(layer, shape[0] * shape[1] * shape[2])
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True) if bias else None
    ty = F.conv2d(tx, tW, tb)
    if activation == "relu":
        ty = F.relu(ty)
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)  # inference: the same path
    leaves = (tx, tW, tb) if bias else (tx, tW)
    grads = oracle(torch, ty, dy, *leaves)
    close(dx, grads[0].permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], grads[1].permute(2, 3, 1, 0), 1e-9)
    if bias:
        close(layer.grads["b"], grads[2], 1e-9)


def test_the_narrow_path_is_taken_where_it_applies():
    assert conv_narrow.applies(built(Conv2D(10, 1), (96, 128, 16)), 8 * 96 * 128)
    assert not conv_narrow.applies(built(Conv2D(10, 1), (96, 128, 16)), 100)  # few pixels
    assert not conv_narrow.applies(built(Conv2D(10, 1), (96, 128, 32)), 8 * 96 * 128)  # wide
    assert not conv_narrow.applies(built(Conv2D(10, 1, stride=2), (96, 128, 16)), 8 * 48 * 64)
    assert not conv_narrow.applies(built(Conv2D(10, 3, padding="same"), (96, 128, 16)), 8 * 96 * 128)
