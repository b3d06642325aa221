"""Losses: costs and d cost / d z against PyTorch (float64) and two-sided differences, stability
at |z| = 1000, float32, predictions and errors, and how make_loss picks and refuses."""

import warnings

import numpy as np
import pytest
from conftest import numerical_grad

from dlcli.kernels.losses import sigmoid_crossentropy, softmax_crossentropy
from dlcli.nn.losses import LOSSES, Loss, make_loss
from dlcli.nn.model import build_model

RTOL = 1e-9
rng = np.random.default_rng(0)
Z1, Y01 = rng.standard_normal((7, 1)) * 2, np.array([1, 0, 0, 1, 1, 0, 1])
Z3, Y3 = rng.standard_normal((7, 3)) * 2, np.array([2, 0, 1, 2, 0, 1, 1])
YK = np.array([[1, 0, -1], [0, -1, 1], [1, 1, 0], [-1, -1, 0], [0, 1, 1], [1, -1, -1], [0, 0, 1]])
YREAL = rng.standard_normal((7, 3))

# (loss, z, y): every loss, with each label layout it takes
CASES = [
    ("binary_crossentropy", Z1, Y01),
    ("binary_crossentropy", Z1, Y01[:, None]),
    ("categorical_crossentropy", Z3, Y3),
    ("categorical_crossentropy", Z3, Y3[:, None]),
    ("mse", Z3, YREAL),
    ("mse", Z3, Y3),  # labels against 3 outputs: one-hot
    ("mse", Z1, Y01),
    ("multi_label", Z3, YK),
]


def torch_cost(torch, name, zt, y):
    F = torch.nn.functional
    if name == "binary_crossentropy":
        return F.binary_cross_entropy_with_logits(zt[:, 0], torch.tensor(y.reshape(-1), dtype=torch.float64))
    if name == "categorical_crossentropy":
        return F.cross_entropy(zt, torch.tensor(y.reshape(-1)))
    if name == "mse":
        target = y if y.shape == zt.shape else (
            np.eye(zt.shape[1])[y] if zt.shape[1] > 1 else y[:, None])
        return F.mse_loss(zt, torch.tensor(target, dtype=torch.float64))
    present = torch.tensor(y >= 0, dtype=torch.float64)
    per_label = F.binary_cross_entropy_with_logits(zt, torch.tensor(y > 0, dtype=torch.float64),
                                                   weight=present, reduction="none")
    return per_label.sum() / zt.shape[0]


@pytest.mark.torch
@pytest.mark.parametrize("name, z, y", CASES)
def test_cost_and_gradient_match_torch(name, z, y):
    torch = pytest.importorskip("torch")
    loss = LOSSES[name]()
    cost = loss.forward(z.copy(), y)
    dz = loss.backward()
    zt = torch.tensor(z, requires_grad=True)
    ct = torch_cost(torch, name, zt, y)
    ct.backward()
    assert cost == pytest.approx(ct.item(), rel=RTOL)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=RTOL, atol=1e-15)


@pytest.mark.torch
@pytest.mark.parametrize("name, activation", [("binary_crossentropy", "sigmoid"),
                                               ("categorical_crossentropy", "softmax"),
                                               ("multi_label", "sigmoid")])
def test_output_is_the_activation_of_the_logits(name, activation):
    torch = pytest.importorskip("torch")
    z = Z1 if name == "binary_crossentropy" else Z3
    zt = torch.tensor(z)
    expected = torch.sigmoid(zt) if activation == "sigmoid" else torch.softmax(zt, -1)
    np.testing.assert_allclose(LOSSES[name]().output(z), expected.numpy(), rtol=RTOL)


@pytest.mark.parametrize("name, z, y", CASES)
def test_gradient_matches_finite_differences(name, z, y):
    loss = LOSSES[name]()
    z = z.copy()
    loss.forward(z, y)
    dz = loss.backward()
    np.testing.assert_allclose(dz, numerical_grad(lambda: loss.forward(z, y), z), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name, z, y", CASES)
def test_float32_gradients_stay_float32(name, z, y):
    loss = LOSSES[name]()
    cost = loss.forward(z.astype(np.float32), y)
    assert isinstance(cost, float) and loss.backward().dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, z, y", [
    ("binary_crossentropy", np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]]), np.array([1, 0, 0, 1])),
    ("categorical_crossentropy", np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]), np.array([0, 0])),
    ("multi_label", np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]), np.array([[0, 0], [1, -1]])),
])
def test_saturated_logits_give_finite_costs_and_gradients_quietly(name, z, y, dtype):
    loss = LOSSES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = loss.forward(z.astype(dtype), y)
        dz = loss.backward()
        out = loss.output(z.astype(dtype))
    assert np.isfinite(cost) and np.all(np.isfinite(dz)) and np.all(np.isfinite(out))
    # half the examples are right with certainty, half wrong by a logit gap of 1000 or 2000
    assert cost > 400
    assert np.all(np.abs(dz) <= 1)


def test_binary_crossentropy_is_the_course_formula():
    a, y = np.array([0.8, 0.9, 0.4]), np.array([1, 1, 0])
    z = np.log(a / (1 - a))[:, None]
    expected = -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))
    assert make_loss("auto", "sigmoid").forward(z, y) == pytest.approx(expected, rel=1e-12)


def test_multi_label_ignores_missing_labels():
    loss = LOSSES["multi_label"]()
    z, y = Z3.copy(), YK.copy()
    base = loss.forward(z, y)
    dz = loss.backward()
    assert np.all(dz[y < 0] == 0)
    z[y < 0] += 100  # nothing there counts
    assert loss.forward(z, y) == pytest.approx(base, rel=1e-12)


def test_predictions_and_errors():
    bce, cce, multi, mse = (LOSSES[n]() for n in ("binary_crossentropy", "categorical_crossentropy",
                                                   "multi_label", "mse"))
    out = np.array([[0.9], [0.2], [0.5], [0.7]])
    np.testing.assert_array_equal(bce.predict(out), [1, 0, 0, 1])
    assert bce.predict(out).shape == (4,)
    assert bce.error(out, np.array([1, 1, 0, 1])) == 0.25
    assert bce.error(out, np.array([[1], [1], [0], [1]])) == 0.25
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    np.testing.assert_array_equal(cce.predict(probs), [1, 0])
    assert cce.error(probs, np.array([1, 2])) == 0.5
    out = np.array([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4]])
    np.testing.assert_array_equal(multi.predict(out), [[1, 0, 1], [0, 1, 0]])
    # present labels: 4, of which one is wrong
    assert multi.error(out, np.array([[1, 1, -1], [0, -1, 0]])) == 0.25
    assert mse.error(np.array([[0.2], [1.4], [2.6]]), np.array([0, 1, 2])) == pytest.approx(1 / 3)
    assert mse.error(np.array([[0.1, 0.9], [0.8, 0.3]]), np.array([1, 1])) == 0.5
    assert mse.error(np.array([[0.1, 0.9], [0.8, 0.3]]), np.array([[0.0, 1.0], [0.0, 0.0]])) == 0.5


@pytest.mark.parametrize("activation, name", [("sigmoid", "binary_crossentropy"),
                                               ("softmax", "categorical_crossentropy"),
                                               ("linear", "mse")])
def test_auto_picks_from_the_last_activation(activation, name):
    loss = make_loss("auto", activation)
    assert isinstance(loss, Loss) and loss.name == name


def test_make_loss_refusals():
    with pytest.raises(ValueError, match="loss: auto needs a last activation"):
        make_loss("auto", "tanh")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        make_loss("hinge", "linear")
    with pytest.raises(ValueError, match="end with softmax or linear, not sigmoid"):
        make_loss("categorical_crossentropy", "sigmoid")
    assert make_loss("multi_label", "sigmoid").name == "multi_label"
    assert make_loss("binary_crossentropy", "linear").name == "binary_crossentropy"
    assert make_loss("mse", "sigmoid").name == "mse"


def test_sigmoid_with_several_units_under_binary_crossentropy_is_refused():
    with pytest.raises(ValueError, match="one sigmoid unit.*multi_label"):
        build_model({"layers": [{"type": "dense", "units": 3, "activation": "sigmoid"}]},
                    input_shape=(4,))
    model = build_model({"layers": [{"type": "dense", "units": 3, "activation": "sigmoid"}]},
                        loss="multi_label", input_shape=(4,))
    assert model.layers[-1].activation == "linear"  # the loss applies the sigmoid


@pytest.mark.parametrize("name, z, y", [
    ("binary_crossentropy", Z3, Y3),
    ("categorical_crossentropy", Z3, Y3[:4]),
    ("multi_label", Z3, YK[:, :2]),
    ("mse", Z3, YREAL[:, :2]),
])
def test_labels_that_do_not_fit_are_value_errors(name, z, y):
    with pytest.raises(ValueError, match="needs"):
        LOSSES[name]().forward(z, y)


# -- the kernels against numpy ----------------------------------------------------------------
def tolerance(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_crossentropy_kernel_matches_numpy(dtype):
    r = np.random.default_rng(4)
    z, y = (r.standard_normal((50, 12)) * 5).astype(dtype), r.integers(0, 12, 50)
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dz = np.empty_like(z)
    cost = softmax_crossentropy(z, y, dz)
    assert cost == pytest.approx(-logp[np.arange(50), y].mean(), rel=tolerance(dtype))
    np.testing.assert_allclose(dz, (np.exp(logp) - np.eye(12)[y]) / 50, rtol=tolerance(dtype),
                               atol=tolerance(dtype) / 50)
    assert dz.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_softmax_crossentropy_kernel_matches_numpy(dtype):
    """The sequence loss's kernel (its own vectorized exp) against numpy's, with padded rows
    (label -1), logits far apart (exp of -1000 is 0) and 27 classes (a vector and a remainder)."""
    from dlcli.kernels.losses import masked_softmax_crossentropy
    r = np.random.default_rng(6)
    z, y = (r.standard_normal((60, 27)) * 8).astype(dtype), r.integers(-1, 27, 60)
    z[3, 5] = 1000.0
    z[4, :] = -300.0
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    present = y >= 0
    dz = np.full_like(z, np.nan)
    cost = masked_softmax_crossentropy(z, y, 0.25, dz)
    assert cost == pytest.approx(-logp[np.arange(60), np.maximum(y, 0)][present].sum(),
                                 rel=tolerance(dtype))
    onehot = np.eye(27)[np.maximum(y, 0)]
    expected = np.where(present[:, None], (np.exp(logp) - onehot) * 0.25, 0.0)
    np.testing.assert_allclose(dz, expected, rtol=tolerance(dtype), atol=tolerance(dtype) / 4)
    assert dz.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_crossentropy_kernel_matches_numpy(dtype):
    r = np.random.default_rng(5)
    z, y = (r.standard_normal((40, 3)) * 5).astype(dtype), r.integers(-1, 2, (40, 3)).astype(dtype)
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    a = 1 / (1 + np.exp(-z64))
    present = y64 >= 0
    cell = -(y64 * np.log(a) + (1 - y64) * np.log(1 - a))
    dz = np.empty_like(z)
    cost = sigmoid_crossentropy(z, y, dz)
    assert cost == pytest.approx(cell[present].sum() / 40, rel=tolerance(dtype))
    np.testing.assert_allclose(dz, np.where(present, (a - y64) / 40, 0), rtol=tolerance(dtype),
                               atol=tolerance(dtype) / 40)
    assert dz.dtype == dtype


@pytest.mark.parametrize("label", [-1, 3])
def test_labels_outside_the_classes_are_value_errors(label):
    with pytest.raises(ValueError, match="outside 0..C-1"):
        LOSSES["categorical_crossentropy"]().forward(Z3, np.array([0, 1, label, 0, 0, 0, 0]))
