"""Dense, activation, dropout, batchnorm and flatten: PyTorch autograd as the oracle (float64),
two-sided differences, float32 runs, buffer reuse, and the Numba kernels against numpy."""

import warnings

import numpy as np
import pytest
from conftest import numerical_grad

from dlcli.kernels import activations as k
from dlcli.nn import build_layer
from dlcli.nn.activations import ACTIVATIONS, PIECEWISE, backward, forward
from dlcli.nn.base import BuildContext
from dlcli.nn.model import build_model

RTOL = 1e-9


def built(spec, input_shape, dtype=np.float64, seed=0):
    layer = build_layer(spec)
    layer.build(input_shape, BuildContext(dtype=np.dtype(dtype), rng=np.random.default_rng(seed),
                                          init="xavier"))
    return layer


def randn(*shape, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class FixedRandom:
    """A dropout rng whose draws are the given array, every time."""

    def __init__(self, draws):
        self.draws = draws

    def random(self, shape, dtype):
        assert shape == self.draws.shape
        return self.draws.astype(dtype)


def torch_act(torch, name, z):
    return {"linear": lambda: z, "relu": lambda: torch.relu(z), "sigmoid": lambda: torch.sigmoid(z),
            "tanh": lambda: torch.tanh(z), "softmax": lambda: torch.softmax(z, dim=-1),
            "leaky_relu": lambda: torch.nn.functional.leaky_relu(z, 0.01)}[name]()


def close(ours, theirs):
    np.testing.assert_allclose(ours, theirs.detach().numpy() if hasattr(theirs, "detach") else theirs,
                               rtol=RTOL, atol=1e-12)


# -- PyTorch oracle ---------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("input_shape", [(5,), (3, 5)])  # vectors, and sequences (m, T, n)
def test_dense_matches_torch(activation, input_shape):
    torch = pytest.importorskip("torch")
    layer = built({"type": "dense", "units": 4, "activation": activation}, input_shape)
    layer.params["b"][...] = randn(4, 1, seed=2)
    x, g = randn(6, *input_shape), randn(6, *input_shape[:-1], 4, seed=3)
    a = layer.forward(x, True)
    dx = layer.backward(g)
    xt, Wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, layer.params["W"], layer.params["b"]))
    at = torch_act(torch, activation, xt @ Wt.T + bt.T[0])
    (at * torch.tensor(g)).sum().backward()
    close(a, at)
    close(dx, xt.grad)
    close(layer.grads["W"], Wt.grad)
    close(layer.grads["b"], bt.grad)


@pytest.mark.torch
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 4, 5)])  # vectors and images: over the last axis
def test_activation_layer_matches_torch(activation, shape):
    torch = pytest.importorskip("torch")
    layer = built({"type": "activation", "activation": activation}, shape[1:])
    x, g = randn(*shape) * 3, randn(*shape, seed=2)
    a = layer.forward(x, True)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    at = torch_act(torch, activation, xt)
    (at * torch.tensor(g)).sum().backward()
    close(a, at)
    close(dx, xt.grad)


@pytest.mark.torch
def test_dense_without_bias_matches_torch():
    torch = pytest.importorskip("torch")
    layer = built({"type": "dense", "units": 3, "activation": "tanh", "bias": False}, (4,))
    assert set(layer.params) == set(layer.grads) == {"W"}
    x, g = randn(5, 4), randn(5, 3, seed=2)
    a, dx = layer.forward(x, True), layer.backward(g)
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(layer.params["W"], requires_grad=True)
    at = torch.tanh(xt @ Wt.T)
    (at * torch.tensor(g)).sum().backward()
    close(a, at)
    close(dx, xt.grad)
    close(layer.grads["W"], Wt.grad)


@pytest.mark.torch
def test_dropout_with_a_fixed_mask_matches_torch():
    torch = pytest.importorskip("torch")
    layer = built({"type": "dropout", "keep_prob": 0.7}, (6,))
    draws = np.random.default_rng(5).random((4, 6))
    layer.rng = FixedRandom(draws)
    x, g = randn(4, 6), randn(4, 6, seed=2)
    a, dx = layer.forward(x, True), layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    at = xt * torch.tensor(draws < 0.7) / 0.7
    (at * torch.tensor(g)).sum().backward()
    close(a, at)
    close(dx, xt.grad)
    assert np.array_equal(a == 0, draws >= 0.7)


def test_dropout_is_identity_at_inference_and_keep_prob_one():
    x = randn(4, 6)
    layer = built({"type": "dropout", "keep_prob": 0.5}, (6,))
    assert layer.forward(x, False) is x and layer.backward(x) is x
    layer.keep_prob = 1.0  # as gradcheck sets it, after build
    assert layer.forward(x, True) is x and layer.backward(x) is x


def test_dropout_draws_from_the_build_contexts_stream():
    def run(seed):
        layer = build_layer({"type": "dropout", "keep_prob": 0.5})
        layer.build((50,), BuildContext(dtype=np.dtype(np.float64),
                                        dropout_rng=np.random.default_rng(seed)))
        return layer.forward(np.ones((40, 50)), True)
    first, again, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert set(np.unique(first)) == {0.0, 2.0}
    assert 0.4 < np.mean(first == 0) < 0.6


@pytest.mark.torch
# the last two: many blocks of kernels/batchnorm.py's partial sums (flushed every PARTIAL
# blocks), with blocks left over and a tail of rows shorter than a block
@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 2), (2, 9, 9, 16), (521, 24)])
def test_batchnorm_training_matches_torch(shape):
    torch = pytest.importorskip("torch")
    layer = built({"type": "batchnorm", "momentum": 0.8, "epsilon": 1e-3}, shape[1:])
    C = shape[-1]
    layer.params["gamma"][...] = 1 + randn(C, seed=4)
    layer.params["beta"][...] = randn(C, seed=5)
    x, g = randn(*shape) * 2 + 1, randn(*shape, seed=2)
    y = layer.forward(x, True)
    dx = layer.backward(g)

    def nchw(a):  # torch normalises over dim 1
        return a.permute(0, 3, 1, 2) if a.dim() == 4 else a
    xt = torch.tensor(x, requires_grad=True)
    gamma = torch.tensor(layer.params["gamma"], requires_grad=True)
    beta = torch.tensor(layer.params["beta"], requires_grad=True)
    running_mean, running_var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    yt = torch.nn.functional.batch_norm(nchw(xt), running_mean, running_var, gamma, beta,
                                        training=True, momentum=1 - 0.8, eps=1e-3)
    yt = yt.permute(0, 2, 3, 1) if yt.dim() == 4 else yt
    (yt * torch.tensor(g)).sum().backward()
    close(y, yt)
    close(dx, xt.grad)
    close(layer.grads["gamma"], gamma.grad)
    close(layer.grads["beta"], beta.grad)
    close(layer.buffers["running_mean"], running_mean)
    # torch moves running_var with the unbiased variance; ours uses the biased one
    x2 = x.reshape(-1, C)
    close(layer.buffers["running_var"], 0.8 * 1 + 0.2 * x2.var(axis=0))


@pytest.mark.torch
def test_batchnorm_inference_uses_the_running_statistics():
    torch = pytest.importorskip("torch")
    layer = built({"type": "batchnorm"}, (3, 3, 4))
    layer.params["gamma"][...] = randn(4, seed=4)
    layer.params["beta"][...] = randn(4, seed=5)
    layer.buffers["running_mean"][...] = randn(4, seed=6)
    layer.buffers["running_var"][...] = 1 + randn(4, seed=7) ** 2
    x = randn(2, 3, 3, 4)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    y = layer.forward(x, False)
    bn = torch.nn.BatchNorm2d(4, eps=1e-5, dtype=torch.float64).eval()
    with torch.no_grad():
        bn.weight[:] = torch.tensor(layer.params["gamma"])
        bn.bias[:] = torch.tensor(layer.params["beta"])
        bn.running_mean[:] = torch.tensor(before["running_mean"])
        bn.running_var[:] = torch.tensor(before["running_var"])
        yt = bn(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    close(y, yt)
    for key, value in before.items():
        np.testing.assert_array_equal(layer.buffers[key], value)


def test_batchnorm_parameters_and_running_update():
    layer = built({"type": "batchnorm"}, (3,))
    assert layer.regularized == ()
    np.testing.assert_array_equal(layer.params["gamma"], np.ones(3))
    np.testing.assert_array_equal(layer.params["beta"], np.zeros(3))
    np.testing.assert_array_equal(layer.buffers["running_var"], np.ones(3))
    x = randn(10, 3) + 5
    layer.forward(x, True)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=0))


def test_flatten_round_trip():
    layer = built({"type": "flatten"}, (2, 3, 4))
    assert layer.output_shape == (24,)
    x = randn(5, 2, 3, 4)
    y = layer.forward(x, True)
    np.testing.assert_array_equal(y, x.reshape(5, 24))
    np.testing.assert_array_equal(layer.backward(y), x)


# -- finite differences -----------------------------------------------------------------------
LAYER_SPECS = [
    ({"type": "dense", "units": 3, "activation": a}, (4,)) for a in ACTIVATIONS
] + [
    ({"type": "dense", "units": 3, "activation": "tanh"}, (2, 4)),
    ({"type": "dense", "units": 3, "bias": False}, (4,)),
    ({"type": "activation", "activation": "softmax"}, (2, 4)),
    ({"type": "activation", "activation": "sigmoid"}, (4,)),
    ({"type": "dropout", "keep_prob": 0.6}, (4,)),
    ({"type": "batchnorm"}, (4,)),
    ({"type": "batchnorm"}, (2, 2, 3)),
    ({"type": "flatten"}, (2, 3)),
]


@pytest.mark.parametrize("spec, input_shape", LAYER_SPECS, ids=lambda v: str(v))
def test_backward_matches_finite_differences(spec, input_shape):
    layer = built(spec, input_shape)
    x = randn(5, *input_shape)
    if spec["type"] == "dropout":
        layer.rng = FixedRandom(np.random.default_rng(5).random(x.shape))
    if "b" in layer.params:
        layer.params["b"][...] = randn(*layer.params["b"].shape, seed=2) * 0.5
    g = randn(5, *layer.output_shape, seed=3)

    def f():
        return float(np.sum(layer.forward(x, True) * g))
    f()
    dx = layer.backward(g)
    analytic = {key: grad.copy() for key, grad in layer.grads.items()}
    np.testing.assert_allclose(dx, numerical_grad(f, x), rtol=1e-6, atol=1e-8)
    for key, value in layer.params.items():
        np.testing.assert_allclose(analytic[key], numerical_grad(f, value), rtol=1e-6, atol=1e-8,
                                   err_msg=key)


def test_model_cost_and_backward_with_l2_match_finite_differences():
    layers = [{"type": "dense", "units": 5, "activation": "relu"},
              {"type": "batchnorm"},
              {"type": "dense", "units": 4, "activation": "leaky_relu"},
              {"type": "dense", "units": 3, "activation": "softmax"}]
    lambd = 0.7
    model = build_model({"layers": layers}, l2=lambd, input_shape=(4,), dtype="float64",
                        rng=np.random.default_rng(2))
    x, y = randn(6, 4), np.array([0, 1, 2, 2, 1, 0])
    cost = model.cost(x, y)
    weights = [layer.params["W"] for layer in model.layers if "W" in layer.params]
    model.l2 = 0.0
    assert cost == pytest.approx(model.cost(x, y) + lambd / (2 * 6) * sum(np.sum(W ** 2) for W in weights),
                                 rel=1e-12)
    model.l2 = lambd
    model.cost(x, y)
    model.backward()
    for name, layer, key in model.trainable():
        analytic = layer.grads[key].copy()
        numerical = numerical_grad(lambda: model.cost(x, y), layer.params[key])
        np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-8, err_msg=name)


# -- dtypes, buffers, shapes, describe ------------------------------------------------------
@pytest.mark.parametrize("spec, input_shape", LAYER_SPECS, ids=lambda v: str(v))
def test_float32_stays_float32(spec, input_shape):
    layer = built(spec, input_shape, dtype=np.float32)
    x = randn(5, *input_shape, dtype=np.float32)
    y = layer.forward(x, True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.dtype == np.float32 for p in [*layer.params.values(), *layer.grads.values(),
                                                *layer.buffers.values()])
    assert set(layer.grads) == set(layer.params)


def test_training_steps_reuse_buffers_and_inference_outputs_stay():
    layer = built({"type": "dense", "units": 3, "activation": "relu"}, (4,))
    x1, x2 = randn(5, 4), randn(5, 4, seed=9)
    a1 = layer.forward(x1, True)
    assert np.shares_memory(layer.forward(x2, True), a1)  # the same array, refilled
    first = layer.forward(x1, False)
    kept = first.copy()
    layer.forward(x2, False)
    np.testing.assert_array_equal(first, kept)
    # a smaller last batch gets arrays of its own size and the right numbers
    np.testing.assert_allclose(layer.forward(x1[:2], True), kept[:2])


def test_first_layer_skips_its_input_gradient():
    layer = built({"type": "dense", "units": 3, "activation": "relu"}, (4,))
    layer.needs_input_grad = False
    layer.forward(randn(5, 4), True)
    assert layer.backward(randn(5, 3)) is None
    assert np.any(layer.grads["W"] != 0)


def test_dense_shapes_init_and_describe():
    layer = built({"type": "dense", "units": 20, "activation": "relu", "init": "zeros"}, (7,))
    assert layer.params["W"].shape == (20, 7) and layer.params["b"].shape == (20, 1)
    assert not layer.params["W"].any() and layer.regularized == ("W",)
    assert layer.describe() == "dense 20 relu"
    he = built({"type": "dense", "units": 400}, (300,))  # the context's xavier: sqrt(1/n_prev)
    assert he.params["W"].std() == pytest.approx(np.sqrt(1 / 300), rel=0.02)
    assert built({"type": "dense", "units": 2, "bias": False}, (3,)).describe() == "dense 2 no bias"
    assert built({"type": "dense", "units": 2}, (6, 3)).output_shape == (6, 2)


@pytest.mark.parametrize("spec, message", [
    ({"type": "dense", "units": 0}, "units"),
    ({"type": "dense", "units": 3, "activation": "swish"}, "unknown activation"),
    ({"type": "activation", "activation": "gelu"}, "unknown activation"),
    ({"type": "dropout", "keep_prob": 0}, "keep_prob"),
    ({"type": "batchnorm", "epsilon": 0}, "epsilon"),
])
def test_bad_layer_settings_are_value_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        build_layer(spec)


# -- the kernels against numpy ----------------------------------------------------------------
def reference_forward(name, z):
    return {"linear": z, "relu": np.maximum(z, 0), "leaky_relu": np.where(z > 0, z, 0.01 * z)}[name]


def reference_backward(name, da, a):
    return da * {"linear": 1, "relu": a > 0, "leaky_relu": np.where(a > 0, 1, 0.01),
                 "sigmoid": a * (1 - a), "tanh": 1 - a * a}[name]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", PIECEWISE)
def test_bias_activation_kernel_matches_numpy(name, dtype, parallel):
    kernel = k.bias_activation_parallel if parallel else k.bias_activation
    z, b = randn(37, 11, dtype=dtype), randn(11, seed=2, dtype=dtype)
    expected = reference_forward(name, z + b)
    out = np.empty_like(z)
    kernel(z, b, k.__dict__[name.upper()], out)
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)
    kernel(z, b, k.__dict__[name.upper()], z)  # in place
    np.testing.assert_array_equal(z, out)
    assert out.dtype == dtype


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["linear", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_backward_kernel_matches_numpy(name, dtype, parallel):
    kernel = k.activation_backward_parallel if parallel else k.activation_backward
    da = randn(37, 11, dtype=dtype)
    a = {"sigmoid": 1 / (1 + np.exp(-randn(37, 11, seed=2))),
         "tanh": np.tanh(randn(37, 11, seed=2))}.get(name, randn(37, 11, seed=2)).astype(dtype)
    if name in ("relu",):
        a = np.maximum(a, 0)
    dz, db = np.empty_like(da), np.full(11, 99, dtype=dtype)
    kernel(da, a, k.__dict__[name.upper()], dz, db)
    expected = reference_backward(name, da.astype(np.float64), a.astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(dz, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, expected.sum(axis=0), rtol=tol, atol=tol)
    assert dz.dtype == db.dtype == dtype


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, n", [(1, 1), (3, 6), (1001, 1), (1001, 6), (523, 16), (131, 65),
                                     (70, 200)])
def test_activation_kernels_block_rows_at_any_width_and_in_place(rows, n, dtype, parallel):
    """The passes run blocks of rows as one flat loop (kernels.activations._block_rows),
    with the leftover rows after them: every width and row count, out over the input too."""
    forward_kernel = k.bias_activation_parallel if parallel else k.bias_activation
    backward_kernel = k.activation_backward_parallel if parallel else k.activation_backward
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for name in ("relu", "leaky_relu", "linear"):
        z, b = randn(rows, n, dtype=dtype), randn(n, seed=2, dtype=dtype)
        a = z.copy()
        forward_kernel(a, b, k.__dict__[name.upper()], a)
        np.testing.assert_allclose(a, reference_forward(name, z + b), rtol=tol)
        da = randn(rows, n, seed=3, dtype=dtype)
        expected = reference_backward(name, da.astype(np.float64), a.astype(np.float64))
        db = np.full(n, 99, dtype=dtype)
        backward_kernel(da, a, k.__dict__[name.upper()], da, db)
        np.testing.assert_allclose(da, expected, rtol=tol, atol=tol)
        np.testing.assert_allclose(db, expected.sum(axis=0), rtol=tol, atol=tol * rows)


def test_big_arrays_take_the_parallel_kernels_with_the_same_numbers(monkeypatch):
    monkeypatch.setattr(k, "PARALLEL_MIN", 1 << 14)
    rows = k.PARALLEL_MIN // 64 + 3
    z, b = randn(rows, 64), randn(64, seed=2)
    a = forward("relu", z, b)
    np.testing.assert_array_equal(a, np.maximum(z + b, 0))
    da, db = randn(rows, 64, seed=3), np.empty((64, 1))
    dz = backward("relu", da, a, db=db)
    np.testing.assert_array_equal(dz, da * (a > 0))
    np.testing.assert_allclose(db[:, 0], dz.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("name", ["linear", "softmax"])
@pytest.mark.parametrize("rows,width", [(1024, 10), (98304 + 7, 10), (4096 + 31, 3), (1023, 10),
                                        (2048, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_gradient_of_narrow_rows_folds_to_numpy_sums(name, rows, width, dtype):
    """The bias gradient over many narrow rows (nn/activations.py's _column_sums folds FOLD rows
    into one first; too few rows, wide rows: numpy's sums as they are) equals float64 sums."""
    import dlcli.nn.activations as acts
    z = randn(rows, width, seed=6).astype(dtype)
    a = forward(name, z)
    da = randn(rows, width, seed=7).astype(dtype)
    db = np.full(width, 99, dtype=dtype)
    dz = backward(name, da, a, db=db)
    folds = rows >= acts.FOLD_FROM and width < acts.FOLD_BELOW
    assert folds == ((rows, width) not in ((1023, 10), (2048, 64)))
    tol = 1e-12 if dtype == np.float64 else 1e-4
    want = dz.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(db, want, rtol=tol, atol=tol * np.abs(dz).sum(axis=0).max())
    assert db.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_finite_and_quiet_at_1000(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = forward("sigmoid", np.array([[-1000.0, -30.0, 0.0, 1000.0]], dtype=dtype))
    np.testing.assert_allclose(a, [[0.0, 1 / (1 + np.exp(30.0)), 0.5, 1.0]], rtol=1e-6)


def test_relu_derivative_at_zero_is_zero():
    a = forward("relu", np.array([[0.0, -0.0, 1e-300]]))
    np.testing.assert_array_equal(backward("relu", np.ones((1, 3)), a), [[0.0, 0.0, 1.0]])


def reference_batchnorm(x2, gamma, beta, epsilon, dy2):
    """The notes' batch norm and its backward, in float64 numpy."""
    mean, var = x2.mean(axis=0), x2.var(axis=0)
    inv_std = 1 / np.sqrt(var + epsilon)
    z_norm = (x2 - mean) * inv_std
    dbeta, dgamma = dy2.sum(axis=0), (dy2 * z_norm).sum(axis=0)
    N = x2.shape[0]
    dx = gamma * inv_std / N * (N * dy2 - dbeta - z_norm * dgamma)
    return [mean, var, inv_std, z_norm, gamma * z_norm + beta, dx, dgamma, dbeta]


@pytest.mark.parametrize("rows", [3, 1000])  # fewer rows than blocks, and many
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_kernels_match_numpy(dtype, rows):
    from dlcli.kernels.batchnorm import batchnorm_backward, batchnorm_forward
    C = 7
    x2 = (randn(rows, C) * 0.5 + 1000).astype(dtype)  # a mean far from zero cancels nothing
    gamma, beta = randn(C, seed=2, dtype=dtype), randn(C, seed=3, dtype=dtype)
    dy2 = randn(rows, C, seed=4, dtype=dtype)
    expected = reference_batchnorm(*(a.astype(np.float64) for a in (x2, gamma, beta)), 1e-5,
                                   dy2.astype(np.float64))
    stats = [np.empty(C, dtype) for _ in range(3)]
    out, dx = (np.empty_like(x2) for _ in range(2))
    dgamma, dbeta = np.empty(C, dtype), np.empty(C, dtype)
    batchnorm_forward(x2, gamma, beta, 1e-5, out, *stats)
    batchnorm_backward(dy2, x2, stats[0], gamma, beta, stats[2], dx, dgamma, dbeta)
    ours = [*stats, out, dx, dgamma, dbeta]
    del expected[3]  # z_norm: not kept, the backward computes it again
    tol = 1e-9 if dtype == np.float64 else 2e-3
    for name, got, want in zip("mean var inv_std out dx dgamma dbeta".split(), ours, expected):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max(), err_msg=name)
