"""Conv, pool, residual and branches layers: forward and backward against PyTorch and finite differences."""

import itertools

import numpy as np
import pytest

from dlcli.nn.base import BuildContext, walk
from dlcli.nn.conv import AvgPool, Conv2D, DepthwiseConv2D, GlobalAvgPool, MaxPool, output_size
from dlcli.nn.conv_blocks import Branches, Residual
from dlcli.nn.conv_transpose import Conv2DTranspose

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
@pytest.mark.parametrize("n_C_prev", (1, 3))  # unrolled transposed / not
@pytest.mark.parametrize("m,n,f,s,padding", GRID)
def test_conv2d_matches_torch(m, n, f, s, padding, n_C_prev):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(3).standard_normal((m, n, n + 1, n_C_prev))
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
@pytest.mark.parametrize("shape,s,padding", [((3, 7, 6, 4), 2, "valid"), ((3, 7, 6, 4), 3, "same"),
                                             ((2, 8, 9, 5), 3, "valid"), ((2, 1, 1, 3), 2, "same"),
                                             ((2, 5, 4, 16), 4, "same")])
def test_strided_1x1_takes_the_pointwise_path_and_matches_torch(shape, s, padding):
    """A 1x1 window at a stride (odd and even sizes, a 1x1 image, a stride past the size):
    nn/conv_pointwise.py's subsample, against PyTorch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(9).standard_normal(shape)
    layer = built(Conv2D(6, 1, stride=s, padding=padding, activation="relu"), x.shape[1:])
    assert layer.pointwise
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(tx, tW, tb, stride=s))
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(2, 40, 33, 16), (1, 32, 64, 3)])
def test_narrow_linear_1x1_on_many_pixels_matches_torch(shape):
    """The U-Net's head in small: a linear 1x1 16 -> 10 conv over more pixels than
    nn/activations.py's FOLD_FROM, so its bias gradient folds rows (2640 rows: a ragged
    remainder after the folded 32s; 2048: none), against PyTorch."""
    from dlcli.nn import activations
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    assert shape[0] * shape[1] * shape[2] >= activations.FOLD_FROM
    x = np.random.default_rng(4).standard_normal(shape)
    layer = built(Conv2D(10, 1, padding="same"), x.shape[1:])
    layer.params["b"][:] = np.random.default_rng(5).standard_normal(10)
    assert layer.pointwise
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.conv2d(tx, tW, tb)
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("examples_a_block,parallel", [(1, False), (2, True), (3, True)])
@pytest.mark.parametrize("n,f,s,padding,n_C_prev", [(6, 3, 1, "same", 3), (7, 5, 1, "valid", 6),
                                                    (7, 3, 2, "same", 4), (6, 2, 1, 2, 8),
                                                    (7, 1, 2, 1, 3), (6, 5, 3, 1, 5)])
def test_conv2d_in_blocks_matches_torch(monkeypatch, n, f, s, padding, n_C_prev, examples_a_block,
                                        parallel):
    """The blocked im2col path (kernels/patches.py): a few examples a block, runs of blocks on
    Numba's threads (dW summed per run), backward unrolling again; against PyTorch, and equal
    to the batch-wide unrolling that keeps every patch."""
    import numba

    import dlcli.kernels.patches as kpatches
    import dlcli.nn.conv as conv_module
    import dlcli.nn.conv_patches as conv_patches
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(31).standard_normal((5, n, n + 1, n_C_prev))
    layer = built(Conv2D(4, f, stride=s, padding=padding, activation="relu"), x.shape[1:])
    width = layer.f * layer.f * n_C_prev * layer.n_H * layer.n_W
    monkeypatch.setattr(kpatches, "BLOCK_COLS", width * examples_a_block)
    monkeypatch.setattr(conv_patches, "PARALLEL_MIN", 0 if parallel else 1 << 60)
    block, parts = conv_patches._plan(layer, 5)
    assert block == examples_a_block and (parts > 1) == (parallel and numba.get_num_threads() > 1)
    y, dy, dx = run(layer, x)
    assert layer.cache is None
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(padded(torch, F, tx, f, s, padding), tW, tb, stride=s))
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)
    monkeypatch.setattr(conv_module, "BLOCKED_PATCHES", False)
    whole = built(Conv2D(4, f, stride=s, padding=padding, activation="relu"), x.shape[1:])
    for a, b in zip(run(whole, x), (y, dy, dx)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whole.grads["W"], layer.grads["W"], rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("parallel", (False, True))
@pytest.mark.parametrize("m,n,f,s,padding", GRID)
def test_depthwise_matches_grouped_torch_conv(m, n, f, s, padding, parallel, monkeypatch):
    import dlcli.nn.conv as conv_module
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    # both drivers of kernels/depthwise.py (the 3x3 windows inside the image take its
    # nine-tap path, the border the tap-at-a-time one)
    monkeypatch.setattr(conv_module, "PARALLEL_MIN", 0 if parallel else 1 << 60)
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


def _depthwise_numpy(A, W, s, pad_top, pad_left, n_H, n_W):
    """Z by the definition, and (for an upstream gradient) dA_prev and dW, loop by loop."""
    m, n_H_prev, n_W_prev, C = A.shape
    f = W.shape[0]
    P = np.zeros((m, n_H_prev + f + n_H * s, n_W_prev + f + n_W * s, C))
    P[:, pad_top:pad_top + n_H_prev, pad_left:pad_left + n_W_prev] = A
    Z = np.zeros((m, n_H, n_W, C))
    for di in range(f):
        for dj in range(f):
            Z += P[:, di:di + n_H * s:s, dj:dj + n_W * s:s] * W[di, dj]

    def grads(dZ):
        dP, dW = np.zeros_like(P), np.zeros_like(W)
        for di in range(f):
            for dj in range(f):
                dP[:, di:di + n_H * s:s, dj:dj + n_W * s:s] += dZ * W[di, dj]
                dW[di, dj] = np.sum(dZ * P[:, di:di + n_H * s:s, dj:dj + n_W * s:s], axis=(0, 1, 2))
        return dP[:, pad_top:pad_top + n_H_prev, pad_left:pad_left + n_W_prev], dW
    return Z, grads


@pytest.mark.parametrize("driver", ("", "_parallel"))
@pytest.mark.parametrize("shape,f,s,padding", [
    ((2, 9, 7, 64), 3, 1, "same"), ((2, 9, 7, 64), 3, 2, "same"), ((3, 8, 8, 16), 3, 1, "valid"),
    ((2, 1, 1, 3), 3, 1, "same"), ((2, 2, 3, 1), 3, 2, "same"), ((1, 7, 6, 4), 3, 3, 1),
    ((2, 5, 5, 8), 3, 1, 2), ((2, 6, 5, 7), 5, 1, "same"), ((2, 6, 5, 7), 1, 1, 1)])
def test_depthwise_kernels_match_numpy(shape, f, s, padding, driver):
    """kernels/depthwise.py against numpy by the definition: edge shapes (a 1x1 image, one
    channel, windows wider than the image, stride 3, padding beyond f - 1) and many channels."""
    from dlcli.kernels import depthwise as kdw
    rng = np.random.default_rng(7)
    A, W = rng.standard_normal(shape), rng.standard_normal((f, f, shape[3]))
    n_H, pad_top = output_size(shape[1], f, s, padding)
    n_W, pad_left = output_size(shape[2], f, s, padding)
    want, grads = _depthwise_numpy(A, W, s, pad_top, pad_left, n_H, n_W)
    Z = np.full(want.shape, np.nan)
    getattr(kdw, "depthwise_forward" + driver)(A, W, s, pad_top, pad_left, Z)
    close(Z, want, 1e-12)
    dZ = rng.standard_normal(Z.shape)
    dA, dW_per_example = np.full(A.shape, np.nan), np.full((shape[0],) + W.shape, np.nan)
    getattr(kdw, "depthwise_backward" + driver)(dZ, A, W, np.ascontiguousarray(W[::-1, ::-1]), s,
                                                pad_top, pad_left, dA, dW_per_example)
    want_dA, want_dW = grads(dZ)
    close(dA, want_dA, 1e-12)
    close(dW_per_example.sum(axis=0), want_dW, 1e-12)


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


TORCH_ACTIVATIONS = {"relu": "relu", "leaky_relu": "leaky_relu", "sigmoid": "sigmoid", "tanh": "tanh",
                     "softmax": lambda F, z: F.softmax(z, dim=1)}


@pytest.mark.torch
@pytest.mark.parametrize("bias", (True, False))
@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATIONS))
def test_conv2d_activations_match_torch(activation, bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(17).standard_normal((2, 6, 5, 3))
    layer = built(Conv2D(4, 3, padding="same", activation=activation, bias=bias), x.shape[1:])
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True) if bias else None
    g = TORCH_ACTIVATIONS[activation]
    g = (lambda F, z, name=g: getattr(F, name)(z)) if isinstance(g, str) else g
    ty = g(F, F.conv2d(F.pad(tx, (1, 1, 1, 1)), tW, tb))
    close(y, nhwc(ty), 1e-9)
    grads = oracle(torch, ty, dy, tx, tW, *([tb] if bias else []))
    close(dx, grads[0].permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], grads[1].permute(2, 3, 1, 0), 1e-9)
    if bias:
        close(layer.grads["b"], grads[2], 1e-9)
    else:
        assert "b" not in layer.params and layer.parameter_count() == 3 * 3 * 3 * 4


POOL_GRID = list(itertools.product((1, 3), (6, 7), (1, 2, 3), (1, 2), ("same", "valid")))


@pytest.mark.torch
@pytest.mark.parametrize("n_C", (3, 9))  # the scan by channel / by cell (kernels/pool.py)
@pytest.mark.parametrize("m,n,f,s,padding", POOL_GRID)
def test_maxpool_matches_torch(m, n, f, s, padding, n_C):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(6).standard_normal((m, n, n + 1, n_C))
    y, dy, dx = run(built(MaxPool(f, s, padding), x.shape[1:]), x)
    tx = nchw(torch, x)
    ty = F.max_pool2d(padded(torch, F, tx, f, s, padding, value=-np.inf), f, s)
    close(y, nhwc(ty), 1e-12)
    close(dx, oracle(torch, ty, dy, tx)[0].permute(0, 2, 3, 1), 1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_C", (3, 9))  # the scan by channel / by cell
@pytest.mark.parametrize("m,n,f,s,padding", POOL_GRID)
def test_maxpool_inference_kernels_match_numpy(m, n, f, s, padding, n_C, dtype):
    """The argmax-free inference scan against a numpy max over -inf padded windows, and the
    layer in inference against the same layer training."""
    from dlcli.kernels import pool as kpool
    x = np.random.default_rng(16).standard_normal((m, n, n + 1, n_C)).astype(dtype)
    layer = built(MaxPool(f, s, padding), x.shape[1:], dtype=dtype)
    pt, pl = layer.pad_top, layer.pad_left
    n_H, n_W = layer.n_H, layer.n_W
    big = np.full((m, n + 2 * f + 2 * s, n + 1 + 2 * f + 2 * s, n_C), -np.inf, dtype=dtype)
    big[:, pt:pt + n, pl:pl + n + 1] = x
    ref = np.empty((m, n_H, n_W, n_C), dtype=dtype)
    for h in range(n_H):
        for w in range(n_W):
            ref[:, h, w] = big[:, h * s:h * s + f, w * s:w * s + f].max(axis=(1, 2))
    for name in ("maxpool_infer", "maxpool_infer_parallel"):
        out = np.empty_like(ref)
        getattr(kpool, name)(x, f, s, pt, pl, out)
        np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(layer.forward(x, False), ref)
    np.testing.assert_array_equal(layer.forward(x, True), ref)


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


@pytest.mark.parametrize("shape,dtype", [((3, 5, 6, 4), np.float64), ((2, 1, 1, 1), np.float64),
                                         ((4, 8, 8, 24), np.float32), ((1, 3, 7, 65), np.float64)])
def test_global_avgpool_kernel_matches_numpy(shape, dtype):
    """kernels/global_pool.py against numpy's mean: a 1x1 image, one channel, float32, a
    channel count past a vector's multiple."""
    from dlcli.kernels.global_pool import global_avgpool_forward
    x = np.random.default_rng(10).standard_normal(shape).astype(dtype) + 3.0
    A = np.full((shape[0], shape[3]), np.nan, dtype=dtype)
    global_avgpool_forward(x, A)
    close(A, x.astype(np.float64).mean(axis=(1, 2)), 1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("cls,kwargs", [(Conv2D, {"filters": 6, "size": 3, "padding": "same"}),
                                        (DepthwiseConv2D, {"size": 3, "stride": 2}),
                                        (Conv2DTranspose, {"filters": 2, "size": 3, "stride": 2})])
def test_float32_agrees_with_float64(cls, kwargs):
    x = np.random.default_rng(10).standard_normal((3, 7, 8, 4))
    layer64, layer32 = built(cls(**kwargs), x.shape[1:]), built(cls(**kwargs), x.shape[1:], np.float32)
    y64, _, dx64 = run(layer64, x)
    y32, _, dx32 = run(layer32, x.astype(np.float32))
    assert y32.dtype == dx32.dtype == layer32.grads["W"].dtype == np.float32
    close(y32, y64, 1e-5)
    close(dx32, dx64, 1e-5)
    close(layer32.grads["W"], layer64.grads["W"], 1e-5)


# -- nested layers: finite differences ------------------------------------------------------------
def numeric_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = f()
        a[idx] = old - eps
        g[idx] = (up - f()) / (2 * eps)
        a[idx] = old
    return g


def check_gradients(layer, x):
    """dx and every nested parameter's gradient of sum(y * R) equal central differences;
    returns the parameter names, as params.npz would spell them after the layer index."""
    R = np.random.default_rng(11).standard_normal(layer.forward(x, True).shape)
    dx = layer.backward(R)
    named = [(prefix + key, child, key) for prefix, child in walk(layer) for key in child.params]
    grads = {name: child.grads[key].copy() for name, child, key in named}
    loss = lambda: float(np.sum(layer.forward(x, True) * R))  # noqa: E731
    close(dx, numeric_grad(loss, x), 1e-6)
    for name, child, key in named:
        close(grads[name], numeric_grad(loss, child.params[key]), 1e-6)
    return [name for name, _, _ in named]


def conv(filters, size=3, **kw):
    return {"type": "conv2d", "filters": filters, "size": size, "padding": "same", **kw}


def test_residual_identity_gradients():
    x = np.random.default_rng(12).standard_normal((2, 5, 4, 3))
    block = built(Residual([conv(3, activation="relu"), conv(3)]), x.shape[1:])
    assert block.projection is None and block.output_shape == (5, 4, 3)
    assert check_gradients(block, x) == ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"]


@pytest.mark.parametrize("stride,projection", [(2, "auto"), (1, True)])
def test_residual_projection_gradients(stride, projection):
    x = np.random.default_rng(13).standard_normal((2, 5, 4, 3))
    block = built(Residual([conv(4, stride=stride, activation="relu"), conv(4)], projection=projection),
                  x.shape[1:])
    assert block.projection.params["W"].shape == (1, 1, 3, 4)
    assert block.output_shape == (-(-5 // stride), -(-4 // stride), 4)
    assert check_gradients(block, x)[-2:] == ["projection.W", "projection.b"]


def test_residual_refuses_what_no_shortcut_can_match():
    with pytest.raises(ValueError, match="identity shortcut"):
        built(Residual([conv(4)], projection=False), (5, 5, 3))
    with pytest.raises(ValueError, match="shortcut"):
        built(Residual([conv(3, 3, padding="valid")]), (8, 8, 3))


def test_branches_gradients_and_channel_order():
    x = np.random.default_rng(14).standard_normal((2, 5, 6, 3))
    paths = [[conv(2, 1)], [conv(2, 1, activation="relu"), conv(3, 3)],
             [{"type": "maxpool", "size": 3, "stride": 1, "padding": "same"}, conv(1, 1)]]
    layer = built(Branches(paths), x.shape[1:])
    assert layer.output_shape == (5, 6, 6)
    y = layer.forward(x, False)
    np.testing.assert_array_equal(y[..., :2], layer.paths[0][0].forward(x, False))
    assert check_gradients(layer, x) == ["paths.0.0.W", "paths.0.0.b", "paths.1.0.W", "paths.1.0.b",
                                         "paths.1.1.W", "paths.1.1.b", "paths.2.1.W", "paths.2.1.b"]


def test_shapes_counts_and_descriptions():
    layer = built(Conv2D(10, 3), (8, 8, 3))
    assert layer.parameter_count() == 280 and layer.output_shape == (6, 6, 10)
    assert Conv2D(10, 3, bias=False).build((8, 8, 3), BuildContext()) == (6, 6, 10)
    assert built(Conv2D(6, 5, padding="same", activation="relu"), (28, 28, 1)).describe() \
        == "conv2d 5x5x6 same relu"
    assert built(Conv2D(8, 3, stride=2, padding="same"), (7, 8, 3)).output_shape == (4, 4, 8)
    assert built(Conv2D(8, 3, padding=2), (7, 8, 3)).output_shape == (9, 10, 8)
    assert built(MaxPool(2), (28, 28, 6)).output_shape == (14, 14, 6)
    assert built(MaxPool(3, padding="same"), (7, 7, 6)).output_shape == (3, 3, 6)
    assert built(DepthwiseConv2D(3), (7, 7, 6)).parameter_count() == 3 * 3 * 6 + 6
    transpose = built(Conv2DTranspose(4, 2, stride=2, activation="relu"), (7, 5, 6))
    assert transpose.output_shape == (14, 10, 4) and transpose.describe() == "conv2d_transpose 2x2x4 s2 relu"
    assert built(Conv2D(8, 3, padding=1), (5, 5, 2)).describe() == "conv2d 3x3x8 pad 1"
    with pytest.raises(ValueError, match="does not fit"):
        built(Conv2D(4, 5), (3, 3, 1))
    with pytest.raises(ValueError, match="needs images"):
        built(MaxPool(2), (10,))
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        Conv2D(4, 3, stride=0)
    with pytest.raises(ValueError, match="filters must be a positive integer"):
        Conv2D(2.5, 3)
    with pytest.raises(ValueError, match="padding must be same, valid"):
        built(Conv2D(4, 3, padding="full"), (5, 5, 1))
    with pytest.raises(ValueError, match="unknown activation"):
        Conv2D(4, 3, activation="swish")


def test_he_init_uses_the_filter_fan_in():
    layer = Conv2D(64, 3)
    layer.build((10, 10, 32), BuildContext(dtype=np.dtype(np.float64), init="he"))
    assert layer.params["W"].std() == pytest.approx(np.sqrt(2 / (3 * 3 * 32)), rel=0.05)
    assert not layer.params["b"].any()
    assert layer.regularized == ("W",)


@pytest.mark.parametrize("cls,kwargs,n_C_prev", [
    (Conv2D, {"filters": 4, "size": 3, "padding": "same"}, 1),
    (Conv2D, {"filters": 4, "size": 3, "stride": 2, "padding": "same"}, 3),
    (Conv2DTranspose, {"filters": 2, "size": 3, "stride": 2}, 3)])
def test_a_few_examples_at_a_time_equals_one_pass(monkeypatch, cls, kwargs, n_C_prev):
    import dlcli.nn.conv as conv_module
    x = np.random.default_rng(15).standard_normal((7, 6, 6, n_C_prev))
    whole, chunked = (built(cls(**kwargs), x.shape[1:]) for _ in range(2))
    expected = run(whole, x) + (whole.forward(x, False),)
    monkeypatch.setattr(conv_module, "CHUNK_COLS", 6 * 6 * 9 * n_C_prev * 2)  # 2 examples
    monkeypatch.setattr(conv_module, "INFERENCE_CHUNK_COLS", 6 * 6 * 9 * n_C_prev * 3)  # 3
    for a, b in zip(run(chunked, x) + (chunked.forward(x, False),), expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(chunked.grads["W"], whole.grads["W"], rtol=1e-12)


def test_first_layer_skips_the_input_gradient_only():
    x = np.random.default_rng(16).standard_normal((2, 6, 6, 1))
    full, first = (built(Conv2D(3, 5, padding="same", activation="relu"), x.shape[1:]) for _ in range(2))
    first.needs_input_grad = False
    _, _, dx = run(full, x)
    _, _, none = run(first, x)
    assert dx.shape == x.shape and none is None
    # the first layer runs the direct kernels (few channels, stride 1): other sums, same numbers
    assert first.direct
    np.testing.assert_allclose(first.grads["W"], full.grads["W"], rtol=1e-12)
    np.testing.assert_allclose(first.grads["b"], full.grads["b"], rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("n_C_prev", (1, 2, 3))
@pytest.mark.parametrize("m,n,f,padding", [(1, 6, 1, "valid"), (3, 7, 3, "same"), (2, 6, 5, "same"),
                                           (3, 7, 2, "same"), (2, 7, 3, "valid"), (3, 6, 3, 2),
                                           (2, 5, 4, 1)])
def test_direct_first_layer_matches_torch(m, n, f, padding, n_C_prev):
    """A first conv2d with few channels at stride 1 trains and predicts through the direct
    kernels, not the unrolling: forward, inference and filter gradient against PyTorch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(3).standard_normal((m, n, n + 1, n_C_prev))
    layer = built(Conv2D(4, f, padding=padding, activation="relu"), x.shape[1:])
    layer.needs_input_grad = False
    assert layer.direct
    y, dy, dx = run(layer, x)
    assert dx is None
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(padded(torch, F, tx, f, 1, padding), tW, tb))
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)
    _, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0).numpy(), 1e-9)
    close(layer.grads["b"], gb.numpy(), 1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["linear", "relu", "leaky_relu"])
@pytest.mark.parametrize("m,n_H_prev,n_W_prev,n_C_prev,f,n_C,pad_top,pad_left", [
    (3, 7, 8, 1, 3, 4, 1, 1), (2, 6, 7, 2, 5, 3, 0, 0), (5, 9, 6, 1, 2, 5, 0, 0),
    (4, 5, 5, 1, 5, 2, 2, 2), (9, 12, 12, 1, 5, 6, 2, 2), (17, 4, 4, 2, 3, 1, 1, 1)])
def test_direct_forward_act_matches_numpy(m, n_H_prev, n_W_prev, n_C_prev, f, n_C, pad_top,
                                          pad_left, activation, dtype):
    """direct_forward_act (serial and parallel): g(conv + b) against a numpy reference."""
    from dlcli.kernels import direct as kdirect
    from dlcli.nn.activations import CODES
    rng = np.random.default_rng(22)
    A = rng.standard_normal((m, n_H_prev, n_W_prev, n_C_prev)).astype(dtype)
    W = rng.standard_normal((f, f, n_C_prev, n_C)).astype(dtype)
    b = rng.standard_normal(n_C).astype(dtype)
    n_H, n_W = n_H_prev + 2 * pad_top - f + 1, n_W_prev + 2 * pad_left - f + 1
    P = np.zeros((m, n_H + f - 1, n_W + f - 1, n_C_prev))
    P[:, pad_top:pad_top + n_H_prev, pad_left:pad_left + n_W_prev] = A
    Z = np.zeros((m, n_H, n_W, n_C)) + b
    for di in range(f):
        for dj in range(f):
            Z += P[:, di:di + n_H, dj:dj + n_W] @ W[di, dj].astype(np.float64)
    expected = {"linear": Z, "relu": np.maximum(Z, 0),
                "leaky_relu": np.where(Z > 0, Z, 0.01 * Z)}[activation]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for forward in (kdirect.direct_forward_act, kdirect.direct_forward_act_parallel):
        out = np.full(expected.shape, np.nan, dtype=dtype)
        forward(A, W, b, CODES[activation], pad_top, pad_left, out)
        close(out, expected, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["linear", "relu", "leaky_relu"])
@pytest.mark.parametrize("m,n_H_prev,n_W_prev,n_C_prev,f,n_C,pad_top,pad_left", [
    (3, 7, 8, 1, 3, 4, 1, 1), (2, 6, 7, 2, 5, 3, 0, 0), (9, 12, 12, 1, 5, 6, 2, 2),
    (17, 4, 4, 2, 3, 1, 1, 1)])
def test_direct_backward_act_matches_numpy(m, n_H_prev, n_W_prev, n_C_prev, f, n_C, pad_top,
                                           pad_left, activation, dtype):
    """direct_backward_act (serial and parallel): dZ = dA g'(z) from the output A, then the
    filter gradient and db, against numpy."""
    from dlcli.kernels import direct as kdirect
    from dlcli.nn.activations import CODES
    rng = np.random.default_rng(23)
    A_prev = rng.standard_normal((m, n_H_prev, n_W_prev, n_C_prev)).astype(dtype)
    n_H, n_W = n_H_prev + 2 * pad_top - f + 1, n_W_prev + 2 * pad_left - f + 1
    A = rng.standard_normal((m, n_H, n_W, n_C)).astype(dtype)  # a layer's output, any signs
    A[0, 0, 0, 0] = 0.0  # g'(0) is the slope below 0, as the course's relu' says
    dA = rng.standard_normal(A.shape).astype(dtype)
    slope = {"linear": 1.0, "relu": 0.0, "leaky_relu": 0.01}[activation]
    dZ = np.where(A > 0, dA, dA * slope).astype(np.float64)
    P = np.zeros((m, n_H + f - 1, n_W + f - 1, n_C_prev))
    P[:, pad_top:pad_top + n_H_prev, pad_left:pad_left + n_W_prev] = A_prev
    expected_dW = np.zeros((f, f, n_C_prev, n_C))
    for di in range(f):
        for dj in range(f):
            expected_dW[di, dj] = np.einsum("ihwc,ihwk->ck", P[:, di:di + n_H, dj:dj + n_W], dZ)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for backward in (kdirect.direct_backward_act, kdirect.direct_backward_act_parallel):
        dW = np.full((f, f, n_C_prev, n_C), np.nan, dtype=dtype)
        db = np.full(n_C, np.nan, dtype=dtype)
        backward(A_prev, dA, A, CODES[activation], pad_top, pad_left, dW, db)
        close(dW, expected_dW, tol)
        close(db, dZ.sum(axis=(0, 1, 2)), tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n_H_prev,n_W_prev,n_C_prev,f,n_C,pad_top,pad_left", [
    (3, 7, 8, 1, 3, 4, 1, 1), (2, 6, 7, 2, 5, 3, 0, 0), (5, 9, 6, 1, 2, 5, 0, 0),
    (4, 5, 5, 1, 5, 2, 2, 2), (9, 12, 12, 1, 5, 6, 2, 2), (17, 4, 4, 2, 3, 1, 1, 1)])
def test_direct_kernels_match_unrolling(m, n_H_prev, n_W_prev, n_C_prev, f, n_C, pad_top, pad_left,
                                        dtype):
    """direct_forward and direct_filter_grad (serial and parallel) against im2col and GEMMs."""
    from dlcli.kernels import conv as kconv, direct as kdirect
    rng = np.random.default_rng(21)
    A = rng.standard_normal((m, n_H_prev, n_W_prev, n_C_prev)).astype(dtype)
    W = rng.standard_normal((f, f, n_C_prev, n_C)).astype(dtype)
    n_H, n_W = n_H_prev + 2 * pad_top - f + 1, n_W_prev + 2 * pad_left - f + 1
    cols = np.empty((m * n_H * n_W, f * f * n_C_prev))
    kconv.im2col(A.astype(np.float64), f, 1, pad_top, pad_left, n_H, n_W, cols)
    expected = (cols @ W.reshape(-1, n_C).astype(np.float64)).reshape(m, n_H, n_W, n_C)
    dZ = rng.standard_normal(expected.shape).astype(dtype)
    expected_dW = (cols.T @ dZ.reshape(-1, n_C).astype(np.float64)).reshape(W.shape)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for forward, filter_grad in ((kdirect.direct_forward, kdirect.direct_filter_grad),
                                 (kdirect.direct_forward_parallel, kdirect.direct_filter_grad_parallel)):
        Z = np.full(expected.shape, np.nan, dtype=dtype)
        forward(A, W, pad_top, pad_left, Z)
        close(Z, expected, tol)
        dW = np.full(W.shape, np.nan, dtype=dtype)
        filter_grad(A, dZ, pad_top, pad_left, dW)
        close(dW, expected_dW, tol)
        assert Z.dtype == dW.dtype == dtype


@pytest.mark.parametrize("cls,kwargs,n_C_prev", [
    (Conv2D, {"filters": 4, "size": 3, "stride": 2, "padding": "same"}, 1),
    (Conv2D, {"filters": 4, "size": 5, "padding": 2}, 3),
    (DepthwiseConv2D, {"size": 3, "stride": 2, "padding": "same"}, 3),
    (Conv2DTranspose, {"filters": 2, "size": 3, "stride": 2}, 3),
    (MaxPool, {"size": 3, "stride": 2, "padding": "same"}, 3),
    (MaxPool, {"size": 3, "stride": 2, "padding": "same"}, 9),
    (AvgPool, {"size": 3, "stride": 2, "padding": "same"}, 3)])
def test_parallel_drivers_equal_serial_ones(monkeypatch, cls, kwargs, n_C_prev):
    import dlcli.nn.conv as conv_module
    x = np.random.default_rng(18).standard_normal((5, 9, 8, n_C_prev))
    serial_layer, parallel_layer = (built(cls(**kwargs), x.shape[1:]) for _ in range(2))
    serial = run(serial_layer, x)
    monkeypatch.setattr(conv_module, "PARALLEL_MIN", 0)
    for a, b in zip(run(parallel_layer, x), serial):
        np.testing.assert_array_equal(a, b)
    for key, grad in serial_layer.grads.items():
        np.testing.assert_array_equal(parallel_layer.grads[key], grad)


@pytest.mark.torch
@pytest.mark.parametrize("winograd", [False, True])
def test_resnet_small_model_matches_torch_in_float64(monkeypatch, winograd):
    """A whole residual network (batch norm, identity and projection shortcuts, pools, softmax
    cost) gives PyTorch's cost and every parameter gradient from the same parameters; with
    winograd, its 3x3 stride-1 convs on the Winograd path (as resnet_small's 32 channels),
    the identity block's shortcut gradient added in its first conv's pass."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    from dlcli.nn import conv_winograd
    from dlcli.nn.model import build_model
    if winograd:
        monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)

    def block(filters, stride=1):
        return {"type": "residual", "layers": [
            conv(filters, stride=stride, bias=False), {"type": "batchnorm"},
            {"type": "activation", "activation": "relu"},
            conv(filters, bias=False), {"type": "batchnorm"}]}

    layers = [conv(4, bias=False), {"type": "batchnorm"}, {"type": "activation", "activation": "relu"},
              block(4), block(6, stride=2), {"type": "maxpool", "size": 2},
              {"type": "global_avgpool"}, {"type": "dense", "units": 3, "activation": "softmax"}]
    model = build_model({"layers": layers}, "auto", 0.0, (8, 7, 3), "float64")
    first = model.layers[3].layers[0]
    assert first.winograd == winograd
    assert conv_winograd.takes_addend(first, (5, 8, 7, 4), np.float64) == winograd
    # the batch norms after Winograd convs take their moments from the convs' output pass
    assert (first.norm is model.layers[3].layers[1]) == winograd
    from dlcli.kernels import batchnorm as kbn
    own_moments, kbn_stats = [], kbn.batchnorm_stats  # the batch norms that take their own

    def counted(x2, *args):
        own_moments.append(x2.shape)
        return kbn_stats(x2, *args)
    monkeypatch.setattr(kbn, "batchnorm_stats", counted)
    rng = np.random.default_rng(19)
    state = {k: v if k.endswith("var") else rng.standard_normal(v.shape)
             for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    x, y = rng.standard_normal((5, 8, 7, 3)), rng.integers(0, 3, 5)
    cost = model.cost(x, y)
    model.backward()

    t = {k: torch.tensor(v, requires_grad=True) for k, v in state.items()}

    def tconv(a, name, stride=1, same=True):
        W = t[name].permute(3, 2, 0, 1)
        if same:
            f, n_H, n_W = W.shape[2], a.shape[2], a.shape[3]
            a = F.pad(a, torch_same_pad(n_W, f, stride) + torch_same_pad(n_H, f, stride))
        return F.conv2d(a, W, t.get(name[:-1] + "b"), stride=stride)

    def tbn(a, prefix):
        return F.batch_norm(a, None, None, t[prefix + "gamma"], t[prefix + "beta"], training=True, eps=1e-5)

    def tblock(a, i, stride=1):
        p = f"{i}.layers."
        z = tbn(tconv(F.relu(tbn(tconv(a, p + "0.W", stride), p + "1.")), p + "3.W"), p + "4.")
        shortcut = tconv(a, f"{i}.projection.W", stride, same=False) if f"{i}.projection.W" in t else a
        return F.relu(z + shortcut)

    tx = torch.tensor(x).permute(0, 3, 1, 2)
    a = F.relu(tbn(tconv(tx, "0.W"), "1."))
    a = F.max_pool2d(tblock(tblock(a, 3), 4, stride=2), 2).mean(dim=(2, 3))
    logits = a @ t["7.W"].T + t["7.b"][:, 0]
    tcost = F.cross_entropy(logits, torch.tensor(y))
    tcost.backward()
    assert cost == pytest.approx(tcost.item(), rel=1e-12)
    # on the Winograd path (the stem's conv too) only the one after the strided conv
    assert own_moments == ([(5 * 4 * 4, 6)] if winograd else
                           [(5 * 8 * 7, 4)] * 3 + [(5 * 4 * 4, 6)] * 2)
    grads = {prefix + key: layer.grads[key] for prefix, layer in model.named_layers() for key in layer.params}
    assert "4.projection.W" in grads and "3.projection.W" not in grads
    for name, grad in grads.items():
        close(grad, t[name].grad.numpy(), 1e-9)


def test_weighted_layers_compute_in_their_parameters_dtype():
    x = np.random.default_rng(20).standard_normal((2, 6, 6, 3))  # float64 data, float32 model
    for layer in (Conv2D(4, 3), DepthwiseConv2D(3), Conv2DTranspose(2, 2)):
        layer = built(layer, x.shape[1:], np.float32)
        y, _, dx = run(layer, x)
        assert y.dtype == dx.dtype == np.float32


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f,stride,pad", [(3, 1, 0), (3, 1, 1), (5, 1, 2), (3, 2, 1), (2, 2, 0), (5, 3, 2)])
def test_im2col_and_col2im_match_numpy(f, stride, pad, dtype, parallel):
    """The unrolling (whole window rows copied as one run where they lie inside) and its
    adjoint against numpy on a padded copy."""
    from dlcli.kernels import conv as kconv
    rng = np.random.default_rng(22)
    A = rng.standard_normal((3, 9, 8, 4)).astype(dtype)
    n_H, n_W = (9 + 2 * pad - f) // stride + 1, (8 + 2 * pad - f) // stride + 1
    P = np.pad(A, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    expected = np.stack([P[:, h * stride:h * stride + f, w * stride:w * stride + f].reshape(3, -1)
                         for h in range(n_H) for w in range(n_W)], axis=1).reshape(-1, f * f * 4)
    unroll, fold = ((kconv.im2col_parallel, kconv.col2im_parallel) if parallel
                    else (kconv.im2col, kconv.col2im))
    cols = np.full(expected.shape, np.nan, dtype=dtype)
    unroll(A, f, stride, pad, pad, n_H, n_W, cols)
    np.testing.assert_array_equal(cols, expected)
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    dP = np.zeros(P.shape)
    for k, (h, w) in enumerate((h, w) for h in range(n_H) for w in range(n_W)):
        dP[:, h * stride:h * stride + f, w * stride:w * stride + f] += \
            dcols.reshape(3, n_H * n_W, f, f, 4)[:, k]
    dA = np.full(A.shape, np.nan, dtype=dtype)
    fold(dcols, f, stride, pad, pad, n_H, n_W, dA)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(dA, dP[:, pad:pad + 9, pad:pad + 8], rtol=tol, atol=tol)


@pytest.mark.parametrize("duo", [False, True])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("n,f,padding,n_C_prev", [(8, 5, "same", 1), (9, 4, "valid", 2),
                                                  (6, 3, 1, 1), (7, 3, "same", 1),
                                                  (9, 4, "valid", 3)])
def test_direct_conv_with_its_max_pool_fused_equals_the_two_layers(monkeypatch, activation, n, f,
                                                                   padding, n_C_prev, duo):
    """A direct conv2d followed by a 2x2 max pool runs both passes in one kernel (pooled
    output and argmax written at once, its backward from the pool's gradient): the same
    outputs, predictions and gradients as the two layers one after the other; an odd output
    size leaves them apart. With `duo`, as inside a training step of small GEMMs, the passes
    go in runs of examples to both threads (kernels/duo.py), and equal PyTorch's too."""
    import dlcli.kernels.duo as kduo
    from dlcli.nn.model import Sequential
    x = np.random.default_rng(24).standard_normal((5, n, n + 1 - n % 2, n_C_prev))
    if duo:
        if not kduo.SUPPORTED:
            pytest.skip("kernels/duo.py runs on Linux x86-64 only (pause, time-stamp counter)")
        monkeypatch.setattr(kduo, "MIN_WORK", 0)
        monkeypatch.setattr(kduo, "_STEP", [1])
        # a helper even where duo() would start none (one core, NUMBA_NUM_THREADS=1)
        monkeypatch.setattr(kduo, "_DUO", [kduo.duo() or kduo.Duo()])
        jobs = kduo.duo().jobs

    def net():
        s = Sequential([Conv2D(3, f, padding=padding, activation=activation), MaxPool(2)])
        s.build(x.shape[1:], BuildContext(dtype=np.dtype(np.float64), rng=np.random.default_rng(0)))
        s.layers[0].needs_input_grad = False
        s.layers[0].params["b"][...] = np.random.default_rng(1).standard_normal(3)
        return s

    fused, plain = net(), net()
    plain.layers[0].pool, plain.layers[1].fused = None, False
    conv, pool = fused.layers
    assert (conv.pool is pool) == (conv.n_H % 2 == 0 and conv.n_W % 2 == 0)
    y, expected = fused.forward(x, True), plain.forward(x, True)
    np.testing.assert_array_equal(y, expected)
    dy = np.random.default_rng(25).standard_normal(y.shape)
    assert fused.backward(dy) is None and plain.backward(dy) is None
    for key in ("W", "b"):
        np.testing.assert_allclose(conv.grads[key], plain.layers[0].grads[key], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(fused.forward(x, False), plain.forward(x, False))
    if duo and conv.pool is not None:
        assert kduo.duo().jobs - jobs == 3  # forward, backward, inference forward
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        tx = nchw(torch, x)
        tW = torch.tensor(conv.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
        tb = torch.tensor(conv.params["b"]).requires_grad_(True)
        z = F.conv2d(padded(torch, F, tx, f, 1, padding), tW, tb)
        a = {"relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, 0.01), "linear": lambda v: v}[activation](z)
        ty = F.max_pool2d(a, 2)
        close(y, nhwc(ty), 1e-9)
        _, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
        close(conv.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
        close(conv.grads["b"], gb, 1e-9)


def test_a_model_built_again_fuses_its_pool_again_or_not():
    """Fusing is decided at every build: the same layers built for an odd output size run
    apart again."""
    from dlcli.nn.model import Sequential
    net = Sequential([Conv2D(3, 3, padding="same", activation="relu"), MaxPool(2)])
    ctx = BuildContext(dtype=np.dtype(np.float64))
    net.build((8, 8, 1), ctx)
    assert net.layers[0].pool is net.layers[1] and net.layers[1].fused
    net.build((7, 7, 1), ctx)
    assert net.layers[0].pool is None and not net.layers[1].fused
    net.layers[0].needs_input_grad = False
    x = np.random.default_rng(27).standard_normal((2, 7, 7, 1))
    assert net.forward(x, True).shape == (2, 3, 3, 3)


@pytest.mark.torch
@pytest.mark.parametrize("shape,s,padding", [((3, 7, 6, 4), 2, "valid"), ((3, 7, 6, 4), 3, "same"),
                                             ((2, 8, 9, 5), 3, "valid"), ((2, 1, 1, 3), 2, "same"),
                                             ((2, 5, 4, 16), 4, "same")])
def test_strided_1x1_takes_the_pointwise_path_and_matches_torch(shape, s, padding):
    """A 1x1 window at a stride (odd and even sizes, a 1x1 image, a stride past the size):
    nn/conv_pointwise.py's subsample, against PyTorch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(9).standard_normal(shape)
    layer = built(Conv2D(6, 1, stride=s, padding=padding, activation="relu"), x.shape[1:])
    assert layer.pointwise
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    ty = F.relu(F.conv2d(tx, tW, tb, stride=s))
    close(y, nhwc(ty), 1e-9)
    close(layer.forward(x, False), nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("examples_a_block,mode", [(1, "serial"), (2, "parallel"), (5, "serial"),
                                                   (1, "duo"), (2, "duo")])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("n,f,s,padding,n_C_prev,bias", [(8, 5, 1, "valid", 6, True),
                                                         (8, 3, 1, "same", 4, False),
                                                         (8, 3, 2, "same", 3, True)])
def test_blocked_conv_with_its_max_pool_fused_equals_the_two_layers(
        monkeypatch, activation, n, f, s, padding, n_C_prev, bias, examples_a_block, mode):
    """A blocked-im2col conv2d (kernels/patches.py) followed by a 2x2 max pool runs the bias,
    the activation and the pool in each block (LeNet-5's 5x5x16): the same outputs,
    predictions and gradients (dW, db, dA_prev) as the two layers one after the other, and as
    PyTorch's conv, activation and max pool in float64; serial and parallel drivers, and the
    runs shared with the helper thread of a small-GEMM step (kernels/duo.py), one or several
    blocks."""
    import dlcli.kernels.duo as kduo
    import dlcli.kernels.patches as kpatches
    import dlcli.nn.conv_patches as conv_patches
    parallel = mode == "parallel"
    from dlcli.nn.model import Sequential
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(41).standard_normal((5, n, n + 4, n_C_prev))  # even outputs

    def net():
        layers = Sequential([Conv2D(4, f, stride=s, padding=padding, activation=activation,
                                    bias=bias), MaxPool(2)])
        layers.build(x.shape[1:], BuildContext(dtype=np.dtype(np.float64), rng=np.random.default_rng(0)))
        if bias:
            layers.layers[0].params["b"][...] = np.random.default_rng(1).standard_normal(4)
        return layers

    fused, plain = net(), net()
    plain.layers[0].pool, plain.layers[1].fused = None, False
    conv = fused.layers[0]
    assert conv.pool is fused.layers[1] and not conv.direct
    width = conv.f * conv.f * n_C_prev * conv.n_H * conv.n_W
    monkeypatch.setattr(kpatches, "BLOCK_COLS", width * examples_a_block)
    monkeypatch.setattr(conv_patches, "PARALLEL_MIN", 0 if parallel else 1 << 60)
    if mode == "duo":  # as inside a training step of small GEMMs, from any size
        if not kduo.SUPPORTED:
            pytest.skip("kernels/duo.py runs on Linux x86-64 only (pause, time-stamp counter)")
        monkeypatch.setattr(kduo, "MIN_WORK", 0)
        monkeypatch.setattr(kduo, "_STEP", [1])
        # a helper even where duo() would start none (one core, NUMBA_NUM_THREADS=1)
        monkeypatch.setattr(kduo, "_DUO", [kduo.duo() or kduo.Duo()])
        jobs = kduo.duo().jobs
    y, expected = fused.forward(x, True), plain.forward(x, True)
    np.testing.assert_array_equal(y, expected)
    dy = np.random.default_rng(42).standard_normal(y.shape)
    dx, dx_plain = fused.backward(dy), plain.backward(dy)
    if mode == "duo":  # both passes of the fused layer went to the helper's queue
        assert kduo.duo().jobs - jobs == 2
    np.testing.assert_allclose(dx, dx_plain, rtol=1e-12, atol=1e-13)
    for key in conv.grads:
        np.testing.assert_allclose(conv.grads[key], plain.layers[0].grads[key], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(fused.forward(x, False), plain.forward(x, False))
    tx = nchw(torch, x)
    tW = torch.tensor(conv.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(conv.params["b"]).requires_grad_(True) if bias else None
    z = F.conv2d(padded(torch, F, tx, f, s, padding), tW, tb, stride=s)
    a = {"relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, 0.01), "linear": lambda v: v}[activation](z)
    ty = F.max_pool2d(a, 2)
    close(y, nhwc(ty), 1e-9)
    grads = oracle(torch, ty, dy, tx, tW, *([tb] if bias else []))
    close(dx, grads[0].permute(0, 2, 3, 1), 1e-9)
    close(conv.grads["W"], grads[1].permute(2, 3, 1, 0), 1e-9)
    if bias:
        close(conv.grads["b"], grads[2], 1e-9)


@pytest.mark.parametrize("f,s,pad", [(2, 2, 0), (2, 1, 1), (2, 3, 1), (3, 1, 1), (3, 2, 1),
                                     (3, 1, 2), (3, 3, 0), (4, 2, 1)])
@pytest.mark.parametrize("n_C", (8, 9))
@pytest.mark.parametrize("parallel", [False, True])
def test_maxpool_forward_kernels_take_the_first_maximum_of_the_cells_inside(f, s, pad, n_C,
                                                                            parallel):
    """kernels/pool.py's scan by cell (2x2 and 3x3 windows unrolled with clamped edges, others
    cell by cell) on many ties: each output the maximum over its window's cells inside the
    input and the flat position of the first of them in row-major order, as numpy's argmax
    over those cells gives it."""
    from dlcli.kernels import pool as kpool
    m, H, W = 2, 7, 8
    x = np.random.default_rng(f * 10 + s + pad).integers(0, 3, (m, H, W, n_C)).astype(np.float32)
    n_H, n_W = (H + 2 * pad - f) // s + 1, (W + 2 * pad - f) // s + 1
    want, want_at = np.empty((m, n_H, n_W, n_C), np.float32), np.empty((m, n_H, n_W, n_C), np.int32)
    for h in range(n_H):
        for w in range(n_W):
            cells = [(r, c) for r in range(h * s - pad, h * s - pad + f)
                     for c in range(w * s - pad, w * s - pad + f) if 0 <= r < H and 0 <= c < W]
            values = np.stack([x[:, r, c] for r, c in cells])  # (cells, m, n_C)
            first = values.argmax(axis=0)
            want[:, h, w] = values.max(axis=0)
            want_at[:, h, w] = np.array([r * W + c for r, c in cells])[first]
    got, got_at = np.full_like(want, np.nan), np.full_like(want_at, -1)
    kernel = kpool.maxpool_forward_parallel if parallel else kpool.maxpool_forward
    kernel(x, f, s, pad, pad, got, got_at, np.empty((0, 1, 1, 1), np.float32))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_at, want_at)
