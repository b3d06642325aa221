"""The lean dense step: Fortran-ordered weights, separate z and a buffers, and the optimizer
over arrays in either memory order, each against numpy in float64."""

import io

import numpy as np
import pytest

from dlcli.nn import build_layer
from dlcli.nn.base import BuildContext
from dlcli.optim import make_optimizer

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")


def dense(units, n_prev, activation, seed=0):
    layer = build_layer({"type": "dense", "units": units, "activation": activation})
    layer.build((n_prev,), BuildContext(dtype=np.dtype(np.float64), rng=np.random.default_rng(seed)))
    layer.params["b"][...] = np.random.default_rng(seed + 1).standard_normal((units, 1))
    return layer


def numpy_dense(x, W, b, g, activation):
    """a, dx, dW, db of g(x W^T + b^T) for the upstream gradient g, in plain numpy."""
    z = x @ W.T + b.T
    a = {"linear": z, "relu": np.maximum(z, 0), "leaky_relu": np.where(z > 0, z, 0.01 * z),
         "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z)}[activation]
    slope = {"linear": np.ones_like(z), "relu": (z > 0) * 1.0, "leaky_relu": np.where(z > 0, 1, 0.01),
             "sigmoid": a * (1 - a), "tanh": 1 - a ** 2}[activation]
    dz = g * slope
    return a, dz @ W, dz.T @ x, dz.sum(axis=0, keepdims=True).T


@pytest.mark.parametrize("order", ["F", "C"])  # as built, and a W replaced by a C-ordered one
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_step_matches_numpy_in_either_weight_order(activation, order):
    layer = dense(7, 5, activation)
    if order == "C":
        layer.params["W"] = np.ascontiguousarray(layer.params["W"])
        layer.grads["W"] = np.ascontiguousarray(layer.grads["W"])
    else:
        assert layer.params["W"].flags.f_contiguous and layer.grads["W"].flags.f_contiguous
    rng = np.random.default_rng(3)
    for m in (6, 4):  # a second batch of another size: the step buffers follow the shape
        x, g = rng.standard_normal((m, 5)), rng.standard_normal((m, 7))
        want = numpy_dense(x, layer.params["W"], layer.params["b"], g, activation)
        a = layer.forward(x, True).copy()
        dx = layer.backward(g)
        for ours, theirs in zip((a, dx, layer.grads["W"], layer.grads["b"]), want):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_dense_inference_leaves_the_training_buffers_alone():
    layer = dense(3, 4, "relu")
    x = np.random.default_rng(0).standard_normal((5, 4))
    a = layer.forward(x, True)
    kept = a.copy()
    layer.forward(x[:2] * 7, False)  # inference between a step's forward and backward
    np.testing.assert_array_equal(a, kept)
    assert layer.forward(x, False) is not a


@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam"])
def test_fortran_ordered_parameters_take_the_kernel_and_match_numpy(name):
    rng = np.random.default_rng(0)
    W0 = np.asfortranarray(rng.standard_normal((4, 6)))
    grads = [np.asfortranarray(rng.standard_normal((4, 6))) for _ in range(3)]
    results = []
    for use_kernels in (True, False):
        opt = make_optimizer({"name": name}, use_kernels)
        if use_kernels:  # the kernel runs, not the numpy fallback
            opt.reference = lambda *args: pytest.fail("fell back to numpy")
        W = W0.copy(order="K")
        for step, dW in enumerate(grads):
            opt.update([("W", W, dW)], 0.01 / (step + 1))
        results.append((W, opt.state_dict()))
    (W_kernel, s_kernel), (W_numpy, s_numpy) = results
    np.testing.assert_allclose(W_kernel, W_numpy, rtol=1e-12, atol=1e-14)
    for key in s_kernel:
        if key != "t":
            assert s_kernel[key].flags.f_contiguous  # saved in its parameter's order
            np.testing.assert_allclose(s_kernel[key], s_numpy[key], rtol=1e-12)


def test_a_checkpoint_state_in_c_order_is_matched_to_a_fortran_weight():
    rng = np.random.default_rng(1)
    W = np.asfortranarray(rng.standard_normal((3, 5)))
    dW = np.asfortranarray(rng.standard_normal((3, 5)))
    v, s = rng.random((3, 5)), rng.random((3, 5))  # C-ordered, as an older checkpoint holds
    buffer = io.BytesIO()
    np.savez(buffer, t=4, **{"v.W": v, "s.W": s})
    buffer.seek(0)
    opt = make_optimizer({"name": "adam"})
    opt.load_state_dict(dict(np.load(buffer)))
    reference = make_optimizer({"name": "adam"}, use_kernels=False)
    reference.load_state_dict({"t": 4, "v.W": v.copy(), "s.W": s.copy()})
    W_ref = W.copy(order="K")
    opt.update([("W", W, dW)], 0.01)
    reference.update([("W", W_ref, dW)], 0.01)
    assert opt.state["W"]["v"].flags.f_contiguous
    np.testing.assert_allclose(W, W_ref, rtol=1e-12)
    np.testing.assert_allclose(opt.state["W"]["s"], reference.state["W"]["s"], rtol=1e-12)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, n", [(1, 1), (3, 6), (1001, 6), (131, 65), (70, 200)])
def test_smooth_backward_in_blocks_matches_numpy(rows, n, dtype, parallel):
    """sigmoid and tanh take the kernel's p + a (q - a) loop: every width, the leftover rows."""
    from dlcli.kernels import activations as k
    kernel = k.activation_backward_parallel if parallel else k.activation_backward
    rng = np.random.default_rng(4)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for code, slope in ((k.SIGMOID, lambda a: a * (1 - a)), (k.TANH, lambda a: 1 - a * a)):
        z = rng.standard_normal((rows, n)) * 3
        a = (1 / (1 + np.exp(-z)) if code == k.SIGMOID else np.tanh(z)).astype(dtype)
        da = rng.standard_normal((rows, n)).astype(dtype)
        dz, db = np.empty_like(da), np.full(n, 99, dtype=dtype)
        kernel(da, a, code, dz, db)
        expected = da.astype(np.float64) * slope(a.astype(np.float64))
        np.testing.assert_allclose(dz, expected, rtol=tol, atol=tol)
        np.testing.assert_allclose(db, expected.sum(axis=0), rtol=tol, atol=tol * rows)


# -- the step's BLAS threads (dlcli/train.py small_step_blas) ------------------------------------
LENET = [{"type": "conv2d", "filters": 6, "size": 5, "padding": "same", "activation": "relu"},
         {"type": "maxpool", "size": 2},
         {"type": "conv2d", "filters": 16, "size": 5, "activation": "relu"},
         {"type": "maxpool", "size": 2}, {"type": "flatten"},
         {"type": "dense", "units": 120, "activation": "relu"},
         {"type": "dense", "units": 10, "activation": "softmax"}]


def _model(layers, input_shape):
    from dlcli.nn.model import build_model
    return build_model({"layers": layers, "init": "he"}, "auto", 0.0, input_shape, "float32")


def _small_gemms(model, m):
    return all(layer.small_gemms(m) for layer in model.layers)


def test_only_steps_of_small_gemms_hold_blas_to_one_thread():
    lenet = _model(LENET, (28, 28, 1))
    assert _small_gemms(lenet, 64) and _small_gemms(lenet, 256)
    mlp = _model([{"type": "dense", "units": 512, "activation": "relu"},
                  {"type": "dense", "units": 10, "activation": "softmax"}], (784,))
    assert not _small_gemms(mlp, 64)  # 64 x 784 x 512: BLAS keeps its threads
    assert _small_gemms(mlp, 8)
    pointwise = _model([{"type": "conv2d", "filters": 8, "size": 1, "activation": "relu"},
                        {"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}],
                       (4, 4, 8))
    assert _small_gemms(pointwise, 2)  # a narrow 1x1 layer's GEMMs: one BLAS thread already
    wide = _model([{"type": "conv2d", "filters": 256, "size": 1, "activation": "relu"},
                   {"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}],
                  (8, 8, 64))
    assert not _small_gemms(wide, 64)  # batch-wide GEMMs of 4096 x 64 x 256
    assert _small_gemms(wide, 1)  # 64 x 64 x 256: small
    lstm = _model([{"type": "embedding", "dim": 4, "vocab": 5},
                   {"type": "lstm", "units": 3, "return_sequences": False}], (6,))
    assert not _small_gemms(lstm, 2)  # a layer that does not say keeps BLAS's threads


def test_a_small_step_runs_blas_on_one_thread_and_gives_the_threads_back():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg.cython_blas  # noqa: F401  the BLAS of Numba's np.dot, seen by the controller
    from dlcli.train import train_step
    lenet = _model(LENET, (28, 28, 1))
    seen = []
    dense = lenet.layers[5]
    forward = dense.forward

    def watched(x, training):
        seen.append([lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"])
        return forward(x, training)

    dense.forward = watched
    controller = threadpoolctl.ThreadpoolController()
    before = [lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 16)
    opt = make_optimizer({"name": "adam", "learning_rate": 1e-3})
    for _ in range(2):
        assert np.isfinite(train_step(lenet, opt, lenet.trainable(), x, y, 1e-3))
    assert seen and all(n == 1 for step in seen for n in step)
    assert [lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"] == before
