"""skip_concat, conv2d_transpose padding same, the yolo head and loss, per-pixel softmax:
forward and backward against PyTorch autograd in float64 and finite differences."""

import numpy as np
import pytest

from conftest import numerical_grad
from dlcli.detect.layers import SkipConcat
from dlcli.detect.targets import encode
from dlcli.detect.yolo import YoloHead, YoloLoss, decode
from dlcli.nn.base import BuildContext
from dlcli.nn.conv import Conv2D, MaxPool
from dlcli.nn.conv_transpose import Conv2DTranspose
from dlcli.nn.losses import CategoricalCrossentropy


def built(layer, input_shape, seed=0):
    layer.build(input_shape, BuildContext(dtype=np.dtype(np.float64), rng=np.random.default_rng(seed)))
    return layer


def close(a, b, rtol=1e-9):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.max(np.abs(a - b)) <= rtol * max(np.max(np.abs(b)), 1e-30)


def nchw(torch, a):
    return torch.tensor(a).permute(0, 3, 1, 2).contiguous().requires_grad_(True)


@pytest.mark.torch
@pytest.mark.parametrize("n_h, n_w, f, s", [(3, 4, 3, 2), (2, 3, 2, 2), (3, 3, 4, 2), (2, 2, 3, 1)])
def test_conv2d_transpose_same_matches_torch(n_h, n_w, f, s):
    torch = pytest.importorskip("torch")
    layer = built(Conv2DTranspose(3, f, stride=s, padding="same"), (n_h, n_w, 2))
    layer.params["b"][...] = np.random.default_rng(5).standard_normal(3)
    assert layer.output_shape == (n_h * s, n_w * s, 3)
    x = np.random.default_rng(1).standard_normal((2, n_h, n_w, 2))
    y = layer.forward(x, True)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(2, 3, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    full = torch.nn.functional.conv_transpose2d(tx, tW, tb, stride=s)
    top = max(f - s, 0) // 2  # Keras/TF same: the full scatter cropped, odd row at the bottom
    ty = full[:, :, top:top + n_h * s, top:top + n_w * s]
    (ty * torch.tensor(dy).permute(0, 3, 1, 2)).sum().backward()
    close(y, ty.detach().permute(0, 2, 3, 1).numpy())
    close(dx, tx.grad.permute(0, 2, 3, 1).numpy())
    close(layer.grads["W"], tW.grad.permute(2, 3, 0, 1).numpy())
    close(layer.grads["b"], tb.grad.numpy())


def course_quiz_transpose():
    """COURSE_NUMBERS §14: [[1,2],[3,4]] scattered by rows [1,0,-1] at stride 2."""
    layer = built(Conv2DTranspose(1, 3, stride=2, bias=False), (2, 2, 1))
    layer.params["W"][...] = np.array([[1, 0, -1]] * 3, dtype=np.float64)[:, :, None, None]
    return layer.forward(np.array([[1.0, 2], [3, 4]])[None, :, :, None], False)[0, :, :, 0]


def test_conv2d_transpose_course_quiz():
    want = [[1, 0, 1, 0, -2], [1, 0, 1, 0, -2], [4, 0, 2, 0, -6], [3, 0, 1, 0, -4], [3, 0, 1, 0, -4]]
    np.testing.assert_array_equal(course_quiz_transpose(), want)


def unet_level():
    return SkipConcat([{"type": "maxpool", "size": 2},
                       {"type": "conv2d", "filters": 3, "size": 3, "padding": "same", "activation": "relu"},
                       {"type": "conv2d_transpose", "filters": 2, "size": 2, "stride": 2}])


@pytest.mark.torch
def test_skip_concat_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = built(unet_level(), (6, 4, 2))
    assert layer.output_shape == (6, 4, 4)
    assert [name for name, _ in layer.children()] == ["layers.0", "layers.1", "layers.2"]
    conv, up = layer.children()[1][1], layer.children()[2][1]
    for p in (conv.params["b"], up.params["b"]):
        p[...] = np.random.default_rng(3).standard_normal(p.shape)
    x = np.random.default_rng(1).standard_normal((3, 6, 4, 2))
    y = layer.forward(x, True)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = nchw(torch, x)
    leaves = [torch.tensor(conv.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True),
              torch.tensor(conv.params["b"]).requires_grad_(True),
              torch.tensor(up.params["W"]).permute(2, 3, 0, 1).contiguous().requires_grad_(True),
              torch.tensor(up.params["b"]).requires_grad_(True)]
    down = F.relu(F.conv2d(F.max_pool2d(tx, 2), leaves[0], leaves[1], padding=1))
    ty = torch.cat([tx, F.conv_transpose2d(down, leaves[2], leaves[3], stride=2)], dim=1)
    (ty * torch.tensor(dy).permute(0, 3, 1, 2)).sum().backward()
    close(y, ty.detach().permute(0, 2, 3, 1).numpy())
    close(dx, tx.grad.permute(0, 2, 3, 1).numpy())
    close(conv.grads["W"], leaves[0].grad.permute(2, 3, 1, 0).numpy())
    close(conv.grads["b"], leaves[1].grad.numpy())
    close(up.grads["W"], leaves[2].grad.permute(2, 3, 0, 1).numpy())
    close(up.grads["b"], leaves[3].grad.numpy())


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("up", [
    {"type": "conv2d_transpose", "filters": 2, "size": 3, "stride": 2, "padding": "same"},
    {"type": "conv2d_transpose", "filters": 3, "size": 2, "stride": 2, "bias": False},
    {"type": "conv2d_transpose", "filters": 1, "size": 4, "stride": 2, "padding": "same"}])
def test_skip_concat_written_into_equals_the_copied_concatenation(monkeypatch, up, parallel):
    """A linear transpose last writes into the concatenation and reads its gradient there
    (nn/conv_transpose.py `into`, `grad_at`): the same numbers as its own arrays copied."""
    from dlcli.kernels import transpose as ktr
    from dlcli.nn import conv_transpose
    def level():
        return built(SkipConcat([{"type": "maxpool", "size": 2},
                                 {"type": "conv2d", "filters": 3, "size": 3, "padding": "same",
                                  "activation": "relu"}, up]), (6, 8, 2))
    fused, apart = level(), level()
    for layer in (fused, apart):
        for _, child in layer.children():
            for p in child.params.values():
                p[...] = np.random.default_rng(3).standard_normal(p.shape)
    if parallel:
        monkeypatch.setattr(conv_transpose, "PARALLEL_MIN", 0)
        monkeypatch.setattr(ktr, "MIN_PIXELS", 1)
        monkeypatch.setattr(ktr, "BLOCK_VALUES", 1)
    x = np.random.default_rng(1).standard_normal((3, 6, 8, 2))
    dy = np.random.default_rng(2).standard_normal((3,) + fused.output_shape)
    assert fused._fused() is not None
    y = fused.forward(x, True).copy()
    dx = fused.backward(dy)
    close(fused.forward(x, True), y, 0)  # a second step writes into the same array
    dx = fused.backward(dy)
    monkeypatch.setattr(conv_transpose.Conv2DTranspose, "fuses", lambda self: False)
    assert apart._fused() is None
    close(y, apart.forward(x, True), 1e-13)
    close(dx, apart.backward(dy), 1e-13)
    for (_, a), (_, b) in zip(fused.children(), apart.children()):
        for key in a.grads:
            close(a.grads[key], b.grads[key], 1e-13)


def test_skip_concat_needs_matching_height_and_width():
    layer = SkipConcat([{"type": "maxpool", "size": 2}])
    with pytest.raises(ValueError, match="heights and widths"):
        built(layer, (6, 6, 2))


ANCHORS = np.array([[0.15, 0.15], [0.4, 0.3]])


def yolo_batch(seed=0, m=3, s=4, classes=3):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((m, s, s, len(ANCHORS), 5 + classes))
    boxes = np.full((m, 3, 5), -1.0)
    boxes[..., 1:] = 0
    for i in range(m):
        for k in range(int(rng.integers(1, 4))):
            boxes[i, k] = [rng.integers(0, classes), *rng.uniform(0.1, 0.9, 2), *rng.uniform(0.08, 0.5, 2)]
    return z, boxes


def yolo_loss(grid=(4, 4), classes=3):
    loss = YoloLoss()
    loss.anchors, loss.classes, loss.grid = ANCHORS, classes, grid
    return loss


def torch_yolo_cost(torch, tz, boxes, grid):
    """SPEC's loss written with torch ops from the targets: an independent oracle."""
    F = torch.nn.functional
    t = encode(boxes, grid, ANCHORS)
    obj = torch.tensor(t.obj)
    txy, thw = torch.tensor(t.txy), torch.tensor(t.thw)
    coord = 5 * (obj[..., None] * ((torch.sigmoid(tz[..., 1:3]) - txy) ** 2
                                   + (tz[..., 3:5] - thw) ** 2)).sum()
    bce = F.binary_cross_entropy_with_logits
    objectness = (obj * bce(tz[..., 0], torch.ones_like(obj), reduction="none")).sum() \
        + 0.5 * ((1 - obj) * bce(tz[..., 0], torch.zeros_like(obj), reduction="none")).sum()
    ce = F.cross_entropy(tz[..., 5:].reshape(-1, tz.shape[-1] - 5), torch.tensor(t.cls).reshape(-1),
                         reduction="none").reshape(obj.shape)
    return (coord + objectness + (obj * ce).sum()) / tz.shape[0]


@pytest.mark.torch
@pytest.mark.parametrize("seed", [0, 1])
def test_yolo_loss_and_gradient_match_torch(seed):
    torch = pytest.importorskip("torch")
    z, boxes = yolo_batch(seed)
    loss = yolo_loss()
    cost = loss.forward(z, boxes)
    dz = loss.backward()
    tz = torch.tensor(z).requires_grad_(True)
    tcost = torch_yolo_cost(torch, tz, boxes, (4, 4))
    tcost.backward()
    assert cost == pytest.approx(float(tcost.detach()), rel=1e-12)
    close(dz, tz.grad.numpy())
    assert (np.abs(dz[..., 1:5]) > 0).sum() > 0  # the coordinate terms take part


def test_yolo_gradient_matches_finite_differences():
    z, boxes = yolo_batch(3, m=2, s=2)
    loss = yolo_loss((2, 2))
    loss.forward(z, boxes)
    close(loss.backward(), numerical_grad(lambda: loss.forward(z, boxes), z), rtol=1e-7)


@pytest.mark.torch
def test_yolo_decode_matches_torch_and_its_gradient():
    torch = pytest.importorskip("torch")
    z, _ = yolo_batch(4, m=2, s=3)
    out = decode(z, ANCHORS)
    tz = torch.tensor(z).requires_grad_(True)
    col = torch.arange(3, dtype=torch.float64)[None, None, :, None]
    row = torch.arange(3, dtype=torch.float64)[None, :, None, None]
    a = torch.tensor(ANCHORS)
    parts = [torch.sigmoid(tz[..., 0]), (col + torch.sigmoid(tz[..., 1])) / 3,
             (row + torch.sigmoid(tz[..., 2])) / 3, a[:, 0] * torch.exp(tz[..., 3]),
             a[:, 1] * torch.exp(tz[..., 4])]
    tout = torch.cat([torch.stack(parts, -1), torch.softmax(tz[..., 5:], -1)], -1)
    close(out, tout.detach().numpy(), 1e-12)
    # the decoded box drives NMS and mAP; its gradient through the same formulas as autograd's
    weights = np.random.default_rng(0).standard_normal(out.shape)
    (tout * torch.tensor(weights)).sum().backward()
    num = numerical_grad(lambda: float(np.sum(decode(z, ANCHORS) * weights)), z)
    close(num, tz.grad.numpy(), 1e-6)


def test_targets_go_to_the_midpoint_cell_and_best_anchor():
    boxes = np.array([[[2, 0.30, 0.80, 0.14, 0.16], [0, 0.99, 0.01, 0.42, 0.28],
                       [-1, 0, 0, 0, 0]]])
    t = encode(boxes, (4, 4), ANCHORS)
    assert t.obj.sum() == 2
    assert t.obj[0, 3, 1, 0] == 1 and t.cls[0, 3, 1, 0] == 2  # row floor(0.8*4), col floor(0.3*4)
    np.testing.assert_allclose(t.txy[0, 3, 1, 0], [0.2, 0.2], atol=1e-12)
    np.testing.assert_allclose(t.thw[0, 3, 1, 0], np.log([0.14 / 0.15, 0.16 / 0.15]))
    assert t.obj[0, 0, 3, 1] == 1 and t.cls[0, 0, 3, 1] == 0  # the tall box takes anchor 1


def test_yolo_head_reshapes_only():
    head = built(YoloHead(ANCHORS.tolist(), 3), (4, 4, 16))
    assert head.output_shape == (4, 4, 2, 8) and not head.params
    x = np.arange(2 * 4 * 4 * 16, dtype=np.float64).reshape(2, 4, 4, 16)
    y = head.forward(x, True)
    np.testing.assert_array_equal(y[1, 2, 3, 1], x[1, 2, 3, 8:])
    np.testing.assert_array_equal(head.backward(y), x)
    with pytest.raises(ValueError, match="needs a conv output"):
        built(YoloHead(ANCHORS.tolist(), 3), (4, 4, 15))


def test_yolo_on_the_courses_grid_is_19x19_by_5_anchors_of_25():
    # COURSE_NUMBERS §14: a 19x19 grid with 5 anchors and 20 classes -> output 19x19x(5x25)
    anchors = [[0.1, 0.1], [0.2, 0.1], [0.1, 0.2], [0.3, 0.3], [0.5, 0.4]]
    head = built(YoloHead(anchors, 20), (19, 19, 5 * 25))
    assert head.output_shape == (19, 19, 5, 25)
    with pytest.raises(ValueError, match="needs a conv output"):
        built(YoloHead(anchors, 20), (19, 19, 5 * 25 - 1))


@pytest.mark.torch
def test_per_pixel_softmax_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 4, 5))
    y = rng.integers(0, 5, (2, 3, 4))
    loss = CategoricalCrossentropy()
    cost = loss.forward(z, y)
    dz = loss.backward()
    tz = torch.tensor(z).requires_grad_(True)
    tcost = torch.nn.functional.cross_entropy(tz.permute(0, 3, 1, 2), torch.tensor(y))  # mean over pixels
    tcost.backward()
    assert cost == pytest.approx(float(tcost.detach()), rel=1e-12)
    close(dz, tz.grad.numpy())
    assert loss.error(loss.output(z), y) == pytest.approx(np.mean(z.argmax(-1) != y))


PIXEL_GRID = [((1, 1, 1), 1), ((1, 3, 5), 2), ((2, 3, 4), 5), ((2, 7, 9), 10), ((2, 4, 4), 16),
              ((1, 5, 7), 27)]


@pytest.mark.torch
@pytest.mark.parametrize("shape,C", PIXEL_GRID)
def test_per_pixel_softmax_kernel_matches_torch_over_edge_shapes(shape, C):
    """kernels/segment.py, LANES rows a block: row counts below, at and between multiples of
    LANES (32), one class and many, logits far apart (exp of -1000 is 0), against PyTorch in
    float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(C)
    z = rng.standard_normal(shape + (C,)) * 8
    z.reshape(-1, C)[0, 0] = 1000.0
    z.reshape(-1, C)[-1, :] = -300.0
    y = rng.integers(0, C, shape)
    loss = CategoricalCrossentropy()
    cost = loss.forward(z, y)
    dz = loss.backward()
    tz = torch.tensor(z).requires_grad_(True)
    tcost = torch.nn.functional.cross_entropy(tz.permute(0, 3, 1, 2), torch.tensor(y))
    tcost.backward()
    assert cost == pytest.approx(float(tcost.detach()), rel=1e-9)
    assert dz.shape == z.shape
    close(dz, tz.grad.numpy(), 1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_pixel_softmax_kernel_matches_numpy_and_the_row_kernel(dtype):
    from dlcli.kernels.losses import softmax_crossentropy
    from dlcli.kernels.segment import pixel_softmax_crossentropy
    r = np.random.default_rng(7)
    z, y = (r.standard_normal((53, 10)) * 5).astype(dtype), r.integers(0, 10, 53)
    z[3, 5], z[40, :] = 1000.0, -300.0  # exp of -1000 is 0 in float32's exponential too
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dz, rows = np.full_like(z, np.nan), np.empty_like(z)
    cost = pixel_softmax_crossentropy(z, y, dz)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert cost == pytest.approx(-logp[np.arange(53), y].mean(), rel=tol)
    np.testing.assert_allclose(dz, (np.exp(logp) - np.eye(10)[y]) / 53, rtol=tol, atol=tol / 53)
    assert cost == pytest.approx(softmax_crossentropy(z, y, rows), rel=tol)
    np.testing.assert_allclose(dz, rows, rtol=tol, atol=tol / 53)
    assert dz.dtype == dtype
    for bad in (-1, 10):
        y[40] = bad
        with pytest.raises(ValueError, match="outside"):
            pixel_softmax_crossentropy(z, y, dz)


@pytest.mark.parametrize("m", [1, 31, 64, 97, 1000])
@pytest.mark.parametrize("parts", [2, 3])
def test_per_pixel_softmax_in_runs_equals_the_serial_kernel(m, parts, monkeypatch):
    """The parallel driver's runs of whole blocks (kernels/segment.py): dz bit for bit, the
    cost to float64 rounding, bad labels refused; the loss takes it from PARALLEL_MIN."""
    from dlcli.kernels import segment
    r = np.random.default_rng(8)
    z, y = (r.standard_normal((m, 10)) * 4).astype(np.float32), r.integers(0, 10, m)
    serial, runs = np.full_like(z, np.nan), np.full_like(z, np.nan)
    cost = segment.pixel_softmax_crossentropy(z, y, serial)
    assert segment.pixel_softmax_crossentropy_parallel(z, y, runs, parts) == pytest.approx(
        cost, rel=1e-12)
    np.testing.assert_array_equal(runs, serial)
    label, y[m // 2] = y[m // 2], 10
    with pytest.raises(ValueError, match="outside"):
        segment.pixel_softmax_crossentropy_parallel(z, y, runs, parts)
    y[m // 2] = label
    taken = []
    monkeypatch.setattr(segment, "pixel_softmax_crossentropy_parallel",
                        lambda *args: taken.append(args[-1]) or 0.0)
    monkeypatch.setattr(segment, "PARALLEL_MIN", z.size)
    segment.pixel_crossentropy(z, y, runs)
    from numba import get_num_threads
    assert taken == ([get_num_threads()] if get_num_threads() > 1 else [])
    before = list(taken)
    monkeypatch.setattr(segment, "PARALLEL_MIN", z.size + 1)
    assert segment.pixel_crossentropy(z, y, runs) == pytest.approx(cost, rel=1e-12)
    assert taken == before  # the serial kernel below PARALLEL_MIN


def test_localization_loss_is_the_notes_squared_error():
    from dlcli.detect.localization import Localization
    z = np.array([[0.8, 0.5, 0.5, 0.2, 0.25, 0.1, 0.7, 0.2],
                  [0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]])
    boxes = np.array([[[1, 0.5, 0.5, 0.2, 0.2], [-1, 0, 0, 0, 0]],
                      [[-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]])
    loss = Localization()
    # image 0 (an object of class 1): every component; image 1 (none): only (0.3 - 0)^2
    want = ((0.8 - 1) ** 2 + 0.05 ** 2 + 0.1 ** 2 + 0.3 ** 2 + 0.2 ** 2 + 0.3 ** 2) / 2
    assert loss.forward(z, boxes) == pytest.approx(want, rel=1e-12)
    close(loss.backward(), numerical_grad(lambda: loss.forward(z, boxes), z), rtol=1e-7)
    assert loss.backward()[1, 1:].tolist() == [0.0] * 7
    # image 0: an object, class 1, IoU 0.04 / 0.05 = 0.8; image 1: p_c 0.3, no object
    assert loss.error(z, boxes) == 0.0
    z[1, 0] = 0.7  # says "object" where there is none
    assert loss.error(z, boxes) == 0.5
    z[0, 5:] = [0.9, 0.1, 0.1]  # wrong class
    assert loss.error(z, boxes) == 1.0


@pytest.mark.parametrize("parallel", [False, True])
def test_skip_concat_pool_takes_the_skip_gradient(monkeypatch, parallel):
    """A max pool first in a skip_concat writes the skip's gradient as its dA_prev's start
    (nn/conv.py MaxPool.addend, kernels/pool.py): the same numbers as the pool's own
    gradient plus the skip's added after, and nothing left set on the pool."""
    from dlcli.detect import layers as dlayers
    from dlcli.kernels import pool as kpool
    from dlcli.nn import conv as nconv
    if parallel:
        monkeypatch.setattr(nconv, "PARALLEL_MIN", 0)
    taking, apart = built(unet_level(), (6, 4, 2)), built(unet_level(), (6, 4, 2))
    for layer in (taking, apart):
        for _, child in layer.children():
            for p in child.params.values():
                p[...] = np.random.default_rng(3).standard_normal(p.shape)
    x = np.random.default_rng(1).standard_normal((3, 6, 4, 2))
    dy = np.random.default_rng(2).standard_normal((3,) + taking.output_shape)
    calls = []
    real = kpool.maxpool_backward_parallel if parallel else kpool.maxpool_backward
    monkeypatch.setattr(kpool, real.__name__, lambda *a: (calls.append(a[3].shape[0]), real(*a)))
    taking.forward(x, True)
    dx = taking.backward(dy)
    assert calls == [3] and taking.children()[0][1].addend is None  # the pool took the skip's
    monkeypatch.setattr(dlayers, "MaxPool", type("NotAPool", (), {}))
    apart.forward(x, True)
    close(dx, apart.backward(dy), 1e-15)
    assert calls == [3, 0]  # the pool's own zeros, the skip's gradient added after


@pytest.mark.parametrize("parallel", [False, True])
def test_maxpool_backward_kernel_starts_at_the_addend(parallel):
    """kernels/pool.py's backward with a strided addend (a concatenation's first channels)
    equals numpy's scatter of dA at the maxima plus the addend."""
    from dlcli.kernels import pool as kpool
    rng = np.random.default_rng(5)
    m, H, W, C = 3, 6, 8, 4
    argmax = rng.integers(0, H * W, (m, H // 2, W // 2, C)).astype(np.int32)
    dA = rng.standard_normal((m, H // 2, W // 2, C))
    concat = rng.standard_normal((m, H, W, 2 * C))
    addend = concat[..., :C]
    want = addend.copy()
    for i, h, w, k in np.ndindex(*dA.shape):
        p = argmax[i, h, w, k]
        want[i, p // W, p % W, k] += dA[i, h, w, k]
    got = np.full((m, H, W, C), np.nan)
    (kpool.maxpool_backward_parallel if parallel else kpool.maxpool_backward)(dA, argmax, got, addend)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


def _recording_pool_scans(monkeypatch, parallel):
    """kernels/pool.py's vector scan wrapped to record how many examples it copied into."""
    from dlcli.kernels import pool as kpool
    from dlcli.nn import conv as nconv
    if parallel:
        monkeypatch.setattr(nconv, "PARALLEL_MIN", 0)
    calls = []
    real = kpool.maxpool_forward_parallel if parallel else kpool.maxpool_forward
    monkeypatch.setattr(kpool, real.__name__, lambda *a: (calls.append(a[7].shape[0]), real(*a)))
    return calls


@pytest.mark.parametrize("parallel", [False, True])
def test_skip_concat_pool_copies_the_skip(monkeypatch, parallel):
    """A max pool first in a skip_concat copies its input into the concatenation as it scans
    it (MaxPool.copy_into, kernels/pool.py): the level's output as when copied after."""
    from dlcli.detect import layers as dlayers

    def level():
        return built(SkipConcat([{"type": "maxpool", "size": 2},
                                 {"type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
                                 {"type": "conv2d_transpose", "filters": 2, "size": 3,
                                  "stride": 2, "padding": "same"}]), (6, 8, 8))
    taking, apart = level(), level()
    for layer in (taking, apart):
        for _, child in layer.children():
            for p in child.params.values():
                p[...] = np.random.default_rng(3).standard_normal(p.shape)
    x = np.random.default_rng(1).standard_normal((3, 6, 8, 8))
    calls = _recording_pool_scans(monkeypatch, parallel)
    y = taking.forward(x, True).copy()
    assert calls == [3] and taking.children()[0][1].copy_into is None
    monkeypatch.setattr(dlayers, "MaxPool", type("NotAPool", (), {}))
    close(apart.forward(x, True), y, 0)
    assert calls == [3, 0]
    close(y[..., :8], x, 0)


@pytest.mark.parametrize("shape,pool", [((7, 8, 8), {"size": 2}), ((6, 8, 8), {"size": 3, "stride": 2}),
                                        ((7, 8, 8), {"size": 2, "padding": "same"}),
                                        ((6, 8, 3), {"size": 2})])
def test_pool_copies_only_where_its_windows_tile_the_input(monkeypatch, shape, pool):
    """An odd height (a row no window reads, or a padded one), overlapping windows, narrow
    channels (the other scan): the copy is left to the skip_concat (copy_into stays set)."""
    layer = built(MaxPool(**pool), shape)
    calls = _recording_pool_scans(monkeypatch, False)
    into = np.zeros((3,) + shape[:2] + (2 * shape[2],))
    layer.copy_into = into
    layer.forward(np.random.default_rng(1).standard_normal((3,) + shape), True)
    assert layer.copy_into is into and not into.any()
    assert calls in ([0], [])  # [] : the narrow scan
