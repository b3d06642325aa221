"""Conv, pool, residual and branches layers: forward and backward against PyTorch and finite differences."""

import itertools

import numpy as np
import pytest

from dlcli.nn.base import BuildContext
from dlcli.nn.conv import (AvgPool, Branches, Conv2D, Conv2DTranspose, DepthwiseConv2D,
                           GlobalAvgPool, MaxPool, Residual, output_size)

GRID = list(itertools.product((1, 3), (6, 7), (1, 3, 5), (1, 2), ("same", "valid", 2)))


def built(layer, input_shape, dtype=np.float64, seed=0):
    layer.build(input_shape, BuildContext(dtype=np.dtype(dtype), rng=np.random.default_rng(seed)))
    for p in layer.params.values():  # random biases too, so a bias bug shows
        p[...] = np.random.default_rng(seed + 1).standard_normal(p.shape)
    return layer


def run(layer, x, seed=2):
    """forward, then backward of a random upstream gradient: (y, dy, dx)."""
    y = layer.forward(x, True)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    return y, dy, layer.backward(dy)


def close(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.max(np.abs(a - b)) <= rtol * max(np.max(np.abs(b)), 1e-30)


# -- torch oracle ---------------------------------------------------------------------------------
def torch_same_pad(n, f, s):
    _, before = output_size(n, f, s, "same")
    n_out = -(-n // s)
    total = max((n_out - 1) * s + f - n, 0)
    return before, total - before


def nchw(torch, a):
    return torch.tensor(a).permute(0, 3, 1, 2).contiguous().requires_grad_(True)


def nhwc(t):
    return t.permute(0, 2, 3, 1).detach().numpy()


def padded(torch, F, x, f, s, padding, value=0.0):
    if padding == "same":
        top, bottom = torch_same_pad(x.shape[2], f, s)
        left, right = torch_same_pad(x.shape[3], f, s)
        return F.pad(x, (left, right, top, bottom), value=value)
    if padding == "valid":
        return x
    return F.pad(x, (padding,) * 4, value=value)


def oracle(torch, y, dy, *leaves):
    (y * torch.tensor(dy).permute(0, 3, 1, 2)).sum().backward()
    return [leaf.grad for leaf in leaves]


@pytest.mark.torch
@pytest.mark.parametrize("m,n,f,s,padding", GRID)
def test_conv2d_matches_torch(m, n, f, s, padding):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(3).standard_normal((m, n, n + 1, 3))
    layer = built(Conv2D(4, f, stride=s, padding=padding), x.shape[1:])
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.conv2d(padded(torch, F, tx, f, s, padding), tW, tb, stride=s)
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("m,n,f,s,padding", GRID)
def test_depthwise_matches_grouped_torch_conv(m, n, f, s, padding):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(4).standard_normal((m, n + 1, n, 5))
    layer = built(DepthwiseConv2D(f, stride=s, padding=padding), x.shape[1:])
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(2, 0, 1)[:, None].contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.conv2d(padded(torch, F, tx, f, s, padding), tW, tb, stride=s, groups=5)
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW[:, 0].permute(1, 2, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("m,n,f,s", sorted({g[:4] for g in GRID}))
def test_conv2d_transpose_matches_torch(m, n, f, s):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(5).standard_normal((m, n, n - 1, 3))
    layer = built(Conv2DTranspose(4, f, stride=s), x.shape[1:])
    y, dy, dx = run(layer, x)
    assert y.shape[1:] == ((n - 1) * s + f, (n - 2) * s + f, 4)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(2, 3, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.conv_transpose2d(tx, tW, tb, stride=s)
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 0, 1), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


POOL_GRID = list(itertools.product((1, 3), (6, 7), (1, 2, 3), (1, 2), ("same", "valid")))


@pytest.mark.torch
@pytest.mark.parametrize("m,n,f,s,padding", POOL_GRID)
def test_maxpool_matches_torch(m, n, f, s, padding):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(6).standard_normal((m, n, n + 1, 3))
    y, dy, dx = run(built(MaxPool(f, s, padding), x.shape[1:]), x)
    tx = nchw(torch, x)
    ty = F.max_pool2d(padded(torch, F, tx, f, s, padding, value=-np.inf), f, s)
    close(y, nhwc(ty), 1e-12)
    close(dx, oracle(torch, ty, dy, tx)[0].permute(0, 2, 3, 1), 1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("m,n,f,s,padding", POOL_GRID)
def test_avgpool_matches_torch_counting_only_inside_cells(m, n, f, s, padding):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(7).standard_normal((m, n, n + 1, 3))
    y, dy, dx = run(built(AvgPool(f, s, padding), x.shape[1:]), x)
    tx = nchw(torch, x)
    inside = F.avg_pool2d(padded(torch, F, torch.ones_like(tx), f, s, padding), f, s)
    ty = F.avg_pool2d(padded(torch, F, tx, f, s, padding), f, s) / inside
    close(y, nhwc(ty), 1e-9)
    close(dx, oracle(torch, ty, dy, tx)[0].permute(0, 2, 3, 1), 1e-9)


@pytest.mark.torch
def test_global_avgpool_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).standard_normal((3, 5, 6, 4))
    layer = built(GlobalAvgPool(), x.shape[1:])
    y = layer.forward(x, True)
    dy = np.random.default_rng(9).standard_normal(y.shape)
    tx = nchw(torch, x)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1)[:, :, 0, 0]
    (ty * torch.tensor(dy)).sum().backward()
    close(y, ty.detach().numpy(), 1e-12)
    close(layer.backward(dy), tx.grad.permute(0, 2, 3, 1), 1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("cls,kwargs", [(Conv2D, {"filters": 6, "size": 3, "padding": "same"}),
                                        (DepthwiseConv2D, {"size": 3, "stride": 2}),
                                        (Conv2DTranspose, {"filters": 2, "size": 3, "stride": 2})])
def test_float32_agrees_with_float64(cls, kwargs):
    x = np.random.default_rng(10).standard_normal((3, 7, 8, 4))
    y64, dy64, dx64 = run(built(cls(**kwargs), x.shape[1:]), x)
    layer32 = built(cls(**kwargs), x.shape[1:], np.float32)
    y32, _, dx32 = run(layer32, x.astype(np.float32))
    assert y32.dtype == dx32.dtype == layer32.grads["W"].dtype == np.float32
    close(y32, y64, 1e-5)
    close(dx32, dx64, 1e-5)
