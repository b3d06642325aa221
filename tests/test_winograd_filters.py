"""kernels/winograd_filters.py: dW from the Winograd backward's dU parts against numpy, and the
conv2d layer's Winograd-domain backward, in runs of examples on Numba's threads, against
PyTorch in float64."""

import numpy as np
import pytest

from dlcli.nn import conv_winograd
from dlcli.nn.conv import Conv2D
from test_conv import built, close, nchw, nhwc, oracle, run

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts,C,K", [(1, 3, 5), (2, 4, 1), (3, 7, 6), (2, 1, 1)])
def test_filter_grad_parts_is_the_transform_of_the_summed_parts(parts, C, K, dtype):
    """dW[:, :, c, n] = G^T (sum over parts of dU) G, the 4x4 dU of position k at (k // 4,
    k % 4); and the same numbers as kernels/winograd_grad.py's transform of numpy's sum."""
    from dlcli.kernels import winograd_filters as kwf
    from dlcli.kernels import winograd_grad as kg
    dU = np.random.default_rng(parts + C).standard_normal((parts, 16, C, K)).astype(dtype)
    dW = np.full((3, 3, C, K), np.nan, dtype=dtype)
    kwf.filter_grad_parts(dU, dW)
    summed = dU.astype(np.float64).sum(axis=0).reshape(4, 4, C, K)
    want = np.einsum("ai,abcn,bj->ijcn", G, summed, G)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dW, want, rtol=tol, atol=tol)
    again = np.empty_like(dW)
    kg.filter_grad_transform(dU.sum(axis=0), again)
    np.testing.assert_array_equal(dW, again)


def test_transposed_filter_as_the_transform_of_w_transposed():
    """The backward's U^T, made as the transform of W with its channels swapped, is U with
    each position transposed."""
    from dlcli.kernels import winograd as kw, winograd_grad as kg
    W = np.random.default_rng(0).standard_normal((3, 3, 5, 7))
    U = conv_winograd._transformed(W, kw)
    np.testing.assert_array_equal(conv_winograd._transformed(np.ascontiguousarray(W.transpose(0, 1, 3, 2)), kw),
                                  kg.transposed(U))


@pytest.mark.torch
@pytest.mark.parametrize("m,n_H,n_W,C,K", [(3, 6, 8, 5, 7), (2, 3, 4, 9, 4), (4, 1, 2, 3, 3)])
def test_winograd_backward_in_runs_of_examples_matches_torch(monkeypatch, m, n_H, n_W, C, K):
    """The U-Net's deep levels in small (few pixels, channels each side): the backward in
    runs of examples on Numba's threads, their dU parts transformed together."""
    from dlcli.kernels import winograd as kw
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(kw, "PARALLEL_MIN", 1)
    x = np.random.default_rng(7).standard_normal((m, n_H, n_W, C))
    layer = built(Conv2D(K, 3, padding="same", activation="relu"), x.shape[1:])
    assert layer.winograd and not layer.split_backward
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(tx, tW, tb, padding=1))
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)
