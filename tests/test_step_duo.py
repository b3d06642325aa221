"""kernels/conv_duo.py and kernels/recurrent_duo.py: the conv layers' blocked passes and the
LSTM's split time loops shared with kernels/duo.py's helper inside a training step give the
same bits as Numba's parallel drivers outside one, and as the main thread alone; and which
models' steps take the helper (dlcli/train.py `small_step_blas`, nn/recurrent_cells.py
`step_threads`)."""

import numpy as np
import pytest

import dlcli.kernels.duo as kduo
from dlcli.kernels import conv_duo
from dlcli.kernels import winograd as kw
from dlcli.kernels import winograd4 as k4
from dlcli.nn import conv as nn_conv
from dlcli.nn import conv_split, conv_transpose, conv_winograd
from dlcli.nn.conv import Conv2D, MaxPool
from dlcli.nn.conv_transpose import Conv2DTranspose
from test_conv import built

needs_duo = pytest.mark.skipif(not kduo.SUPPORTED, reason="kernels/duo.py runs on Linux x86-64 "
                               "only (the pause instruction, the time-stamp counter)")

# (path, layer, input shape, passes a step): each path's passes forced to two runs on small
# shapes; the split backward is two passes (the filter gradient, then the input gradient as
# a Winograd convolution of dZ)
PATHS = [
    ("F(2x2) blocks", lambda: Conv2D(5, 3, padding="same", activation="relu"), (9, 7, 4), 2),
    ("F(4x4) blocks", lambda: Conv2D(5, 3, padding="same"), (9, 11, 4), 2),
    ("F(2x2) positions", lambda: Conv2D(6, 3, padding="same", activation="relu"), (6, 8, 5), 2),
    ("split backward", lambda: Conv2D(3, 3, padding="same"), (9, 7, 4), 3),
    ("transpose", lambda: Conv2DTranspose(4, 3, stride=2, padding="same"), (5, 6, 3), 2),
    ("maxpool", lambda: MaxPool(2), (6, 8, 16), 2),
]


def force(monkeypatch, path):
    monkeypatch.setattr("numba.get_num_threads", lambda: 2)  # two runs, whatever the machine
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 1 if "4x4" in path else 10 ** 6)
    monkeypatch.setattr(conv_winograd, "FOUR_MIN_SIDE", 1)
    monkeypatch.setattr(kw, "PARALLEL_MIN", 0)
    monkeypatch.setattr(k4, "PARALLEL_MIN", 0)
    monkeypatch.setattr(kw, "BLOCK_ELEMENTS", 1)  # a tile row a block: several blocks a run
    monkeypatch.setattr(k4, "BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(kw, "POSITIONS", "positions" in path)
    monkeypatch.setattr(kw, "POSITIONS_MIN", 1)
    monkeypatch.setattr(kw, "POSITIONS_MAX", 1 << 40)
    monkeypatch.setattr(conv_split, "SPLIT_MAX_FILTERS", 10 ** 6 if "split" in path else 0)
    monkeypatch.setattr(conv_split, "SPLIT_MIN_PIXELS", 0)
    monkeypatch.setattr(conv_split, "SMALL_MATRIX_BLAS", False)
    monkeypatch.setattr(conv_split, "FOUR_MIN_CHANNELS", 10 ** 6)
    monkeypatch.setattr(conv_transpose, "PARALLEL_MIN", 0)
    monkeypatch.setattr(nn_conv, "PARALLEL_MIN", 0)


def results(layer, x, dy):
    y = layer.forward(x, True).copy()
    dx = layer.backward(dy)
    return [y, dx.copy()] + [g.copy() for g in layer.grads.values()]


@needs_duo
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path,make,shape,passes", PATHS, ids=[p[0] for p in PATHS])
def test_passes_on_the_helper_equal_numbas_parallel_drivers(monkeypatch, path, make, shape,
                                                             passes, dtype):
    """Forward and backward inside a step with the helper (it and the main thread taking the
    runs), inside a step on the main thread alone, and outside a step (a Numba parallel
    region): the same bits, pass after pass; the helper's passes are really its jobs. The
    max pool takes kernels/conv_duo.py's per-example drivers."""
    force(monkeypatch, path)
    layer = built(make(), shape, dtype)
    if isinstance(layer, Conv2D):
        assert layer.winograd
        assert conv_winograd.four(layer) == ("4x4" in path)
        assert layer.split_backward == ("split" in path)
        assert kw.by_positions(7, layer.n_H, layer.n_W, layer.n_C_prev, layer.n_C) == (
            "positions" in path)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7,) + shape).astype(dtype)
    dy = rng.standard_normal((7,) + layer.output_shape).astype(dtype)
    expected = results(layer, x, dy)  # no step: Numba's parallel drivers

    monkeypatch.setattr(kduo, "_STEP", [1])
    # a helper even where duo() would start none (one core): the same runs, on one core
    helper = kduo.duo() or kduo.Duo()
    monkeypatch.setattr(kduo, "_DUO", [helper])
    for alone in (0, 10 ** 9, 0, 0):
        monkeypatch.setattr(helper, "alone", alone)
        monkeypatch.setattr(helper, "late", 0.0)
        jobs = helper.jobs
        for a, b in zip(results(layer, x, dy), expected):
            np.testing.assert_array_equal(a, b)
        assert helper.jobs == jobs + passes  # every pass of the step went to conv_duo


def test_the_duo_drivers_take_the_parallel_drivers_arguments():
    """Each driver's arguments after (ctrl, gen, counter, parts) are its parallel driver's,
    less `parts` where that driver takes it (the call sites pass the same tuples)."""
    import inspect
    from dlcli.kernels import filter_grad, pool, transpose, winograd_grad, winograd_positions
    pairs = [(conv_duo.convolve_blocks_duo, kw.convolve_blocks_parallel),
             (conv_duo.convolve4_blocks_duo, k4.convolve_blocks_parallel),
             (conv_duo.backward_blocks_duo, winograd_grad.backward_blocks_parallel),
             (conv_duo.convolve_positions_duo, winograd_positions.convolve_positions_parallel),
             (conv_duo.backward_positions_duo, winograd_positions.backward_positions_parallel),
             (conv_duo.filter_grad_duo, filter_grad.filter_grad_parallel),
             (conv_duo.transpose_forward_duo, transpose.forward_blocks_parallel),
             (conv_duo.transpose_backward_duo, transpose.backward_blocks_parallel),
             (conv_duo.maxpool_forward_duo, pool.maxpool_forward_parallel),
             (conv_duo.maxpool_backward_duo, pool.maxpool_backward_parallel)]
    for duo_driver, parallel in pairs:
        got = list(inspect.signature(duo_driver.py_func).parameters)
        want = [p for p in inspect.signature(parallel.py_func).parameters if p != "parts"]
        assert got[:4] == ["ctrl", "gen", "counter", "parts"]
        assert got[4:] == want, duo_driver.__name__


def unet_like():
    return {"layers": [
        {"type": "conv2d", "filters": 16, "size": 3, "padding": "same", "activation": "relu"},
        {"type": "skip_concat", "layers": [
            {"type": "maxpool", "size": 2},
            {"type": "conv2d", "filters": 32, "size": 3, "padding": "same", "activation": "relu"},
            {"type": "conv2d_transpose", "filters": 16, "size": 3, "stride": 2,
             "padding": "same"}]},
        {"type": "conv2d", "filters": 16, "size": 3, "padding": "same", "activation": "relu"},
        {"type": "conv2d", "filters": 10, "size": 1, "activation": "softmax"}]}


def test_which_steps_take_the_helper():
    """A U-Net's step (Winograd convs, a skip_concat with a transpose inside, a narrow 1x1 head,
    up to 32 channels a side) holds BLAS to one thread and shares its passes (StepDuo); a block
    with a wide 1x1 conv of large GEMMs inside keeps BLAS's threads, and so does a depthwise
    conv's step (nn/conv.py's DepthwiseConv2D says why)."""
    from dlcli.nn.model import build_model
    from dlcli.train import small_step_blas
    unet = build_model(unet_like(), "auto", 0.0, (32, 48, 3), "float32")
    assert isinstance(small_step_blas(unet, 8), kduo.StepDuo)
    for width, held in ((32, True), (40, False)):  # the course U-Net's 32 -> 23 head: one thread
        head = build_model({"layers": [
            {"type": "conv2d", "filters": width, "size": 3, "padding": "same",
             "activation": "relu"},
            {"type": "conv2d", "filters": 23, "size": 1, "activation": "softmax"}]},
            "auto", 0.0, (96, 128, 3), "float32")
        assert isinstance(small_step_blas(head, 32), kduo.StepDuo) == held
    wide = {"layers": [{"type": "residual", "layers": [
        {"type": "conv2d", "filters": 256, "size": 1, "activation": "relu"},
        {"type": "conv2d", "filters": 64, "size": 1}]},
        {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]}
    block = build_model(wide, "auto", 0.0, (16, 16, 64), "float32")
    assert not block.layers[0].small_gemms(64)
    assert not isinstance(small_step_blas(block, 64), kduo.StepDuo)
    depthwise = build_model({"layers": [
        {"type": "depthwise_conv2d", "size": 3, "padding": "same", "activation": "relu"},
        {"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]},
        "auto", 0.0, (16, 16, 64), "float32")
    assert not isinstance(small_step_blas(depthwise, 64), kduo.StepDuo)


@needs_duo
@pytest.mark.parametrize("embedded", [True, False])
def test_lstm_passes_on_the_helper_equal_numbas_parallel_drivers(monkeypatch, embedded):
    """Two LSTMs (the first taking the embedding in, or a plain input; the second with its dX
    GEMM) at a batch that splits their time loops into blocks: the cost and every gradient
    the same bits inside an LSTM model's step with the helper, with the main thread alone,
    and outside a step (Numba's parallel region); each LSTM pass a job of the helper's."""
    from dlcli.nn.model import build_model
    from dlcli.nn.recurrent_cells import step_threads
    monkeypatch.setattr("numba.get_num_threads", lambda: 2)  # split, whatever the machine
    monkeypatch.delenv("DLCLI_RNN_BLAS_THREADS", raising=False)
    T, V, m = 6, 9, 13
    first = [{"type": "embedding", "dim": 5, "vocab": V}] if embedded else []
    model = build_model({"layers": first + [
        {"type": "lstm", "units": 4, "return_sequences": True},
        {"type": "lstm", "units": 3, "return_sequences": True},
        {"type": "dense", "units": V, "activation": "softmax"}]},
        input_shape=(T,) if embedded else (T, 2), dtype="float64", rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    x = rng.integers(0, V, size=(m, T)) if embedded else rng.standard_normal((m, T, 2))
    y = rng.integers(0, V, size=(m, T))

    def results():
        cost = model.cost(x, y)
        model.backward()
        return [np.array(cost)] + [layer.grads[key].copy() for _, layer, key in model.trainable()]

    expected = results()
    helper = kduo.duo() or kduo.Duo()
    monkeypatch.setattr(kduo, "_DUO", [helper])
    for alone in (0, 10 ** 9, 0):
        monkeypatch.setattr(helper, "alone", alone)
        monkeypatch.setattr(helper, "late", 0.0)
        jobs = helper.jobs
        with step_threads(model):
            got = results()
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
        assert helper.jobs == jobs + 4  # two LSTMs, a forward and a backward each
