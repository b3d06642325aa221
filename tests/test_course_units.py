"""The course's unit-test numbers for the fully connected pieces (COURSE_NUMBERS.md sections 3
and 5), drawn with np.random.seed / np.random.randn exactly as the notebooks do.

The notebooks hold examples as columns (X (n, m)); dlcli holds them as rows, so inputs go in
transposed and outputs come back transposed. Their dW and db carry the 1/m that dlcli's loss
applies, so a layer's own gradients are compared after dividing by m.
"""

import numpy as np
import pytest

from dlcli.nn import build_layer
from dlcli.nn.base import BuildContext
from dlcli.nn.model import build_model


def dense(units, activation="linear"):
    return {"type": "dense", "units": units, "activation": activation}


def course_dense(W, b, activation="linear"):
    """A float64 dense layer holding the notebook's W (n, n_prev) and b (n, 1)."""
    layer = build_layer(dense(W.shape[0], activation))
    layer.build((W.shape[1],), BuildContext(dtype=np.dtype(np.float64)))
    layer.params["W"][...], layer.params["b"][...] = W, b
    return layer


def draw(*shapes):
    return [np.random.randn(*shape) for shape in shapes]


def course_model(layers, state_shapes, l2=0.0):
    """A float64 model loaded with the notebook's W1, b1, W2, b2, ... drawn in that order."""
    model = build_model({"layers": layers}, l2=l2, input_shape=(state_shapes[0][1],), dtype="float64")
    dense_indices = [i for i, layer in enumerate(model.layers) if "W" in layer.params]
    state = {}
    for i, shape in zip(dense_indices, state_shapes):
        state[f"{i}.W"] = np.random.randn(*shape)
        state[f"{i}.b"] = np.random.randn(shape[0], 1)
    model.load_state_dict(state)
    return model


def test_linear_forward():
    np.random.seed(1)
    A, W, b = draw((3, 2), (1, 3), (1, 1))
    Z = course_dense(W, b).forward(A.T, False).T
    np.testing.assert_allclose(Z, [[3.26295337, -1.23429987]], rtol=1e-8)


@pytest.mark.parametrize("activation, expected", [("sigmoid", [[0.96890023, 0.11013289]]),
                                                  ("relu", [[3.43896131, 0.0]])])
def test_linear_activation_forward(activation, expected):
    np.random.seed(2)
    A_prev, W, b = draw((3, 2), (1, 3), (1, 1))
    A = course_dense(W, b, activation).forward(A_prev.T, False).T
    np.testing.assert_allclose(A, expected, rtol=1e-7, atol=1e-12)


def test_L_model_forward():
    np.random.seed(6)
    X, = draw((5, 4))
    model = course_model([dense(4, "relu"), dense(3, "relu"), dense(1, "sigmoid")],
                         [(4, 5), (3, 4), (1, 3)])
    AL = model.predict_proba(X.T).T
    np.testing.assert_allclose(AL, [[0.03921668, 0.70498921, 0.19734387, 0.04728177]], rtol=1e-6)


def logits(A):
    """The z whose sigmoid is A: dlcli's cross-entropy starts from the logits."""
    A = np.asarray(A, dtype=np.float64)
    return np.log(A / (1 - A)).T


def test_compute_cost():
    model = build_model({"layers": [dense(1, "sigmoid")]}, input_shape=(1,), dtype="float64")
    cost = model.loss.forward(logits([[0.8, 0.9, 0.4]]), np.array([1, 1, 0]))
    assert cost == pytest.approx(0.2797765635793423, rel=1e-12)


def test_linear_backward():
    np.random.seed(1)
    dZ, A, W, b = draw((3, 4), (5, 4), (3, 5), (3, 1))
    layer = course_dense(W, b)
    layer.forward(A.T, True)
    layer.backward(dZ.T)
    m = A.shape[1]
    np.testing.assert_allclose(layer.grads["b"] / m, [[-0.14713786], [-0.11313155], [-0.13209101]],
                               rtol=1e-7)
    np.testing.assert_allclose(layer.grads["W"][0] / m,
                               [0.07313866, -0.0976715, -0.87585828, 0.73763362, 0.00785716], rtol=1e-6)


def test_compute_cost_with_regularization():
    np.random.seed(1)
    model = course_model([dense(2, "relu"), dense(3, "relu"), dense(1, "sigmoid")],
                         [(2, 3), (3, 2), (1, 3)], l2=0.1)
    A3 = [[0.40682402, 0.01629284, 0.16722898, 0.10118111, 0.40682402]]
    cost = model.loss.forward(logits(A3), np.array([1, 1, 0, 1, 0])) + model.l2_cost(5)
    assert cost == pytest.approx(1.7864859451590758, rel=1e-12)


def test_backward_propagation_with_regularization():
    # the notebook's cache is this forward pass: X, then W1, b1, W2, b2, W3, b3 from seed 1
    np.random.seed(1)
    X, = draw((3, 5))
    model = course_model([dense(2, "relu"), dense(3, "relu"), dense(1, "sigmoid")],
                         [(2, 3), (3, 2), (1, 3)], l2=0.7)
    model.cost(X.T, np.array([1, 1, 0, 1, 0]))
    model.backward()
    dW1, dW2, dW3 = (layer.grads["W"] for layer in model.layers)
    np.testing.assert_allclose(dW3, [[-1.77691347, -0.11832879, -0.09397446]], rtol=1e-7)
    np.testing.assert_allclose(dW2, [[0.79276486, 0.85133918], [-0.0957219, -0.01720463],
                                     [-0.13100772, -0.03750433]], rtol=1e-6)
    np.testing.assert_allclose(dW1, [[-0.25604646, 0.12298827, -0.28297129],
                                     [-0.17706303, 0.34536094, -0.4410571]], rtol=1e-6)


class CourseRand:
    """The notebook's masks: np.random.rand(n, m) from one legacy stream, D1 before D2."""

    def __init__(self, state):
        self.state = state

    def random(self, shape, dtype):
        return self.state.rand(shape[1], shape[0]).T.astype(dtype)


def test_forward_propagation_with_dropout():
    np.random.seed(1)
    X, = draw((3, 5))
    drop = {"type": "dropout", "keep_prob": 0.7}
    model = course_model([dense(2, "relu"), drop, dense(3, "relu"), drop, dense(1, "sigmoid")],
                         [(2, 3), (3, 2), (1, 3)])
    model.layers[1].rng = model.layers[3].rng = CourseRand(np.random.RandomState(1))
    A3 = model.loss.output(model.forward(X.T, True)).T
    np.testing.assert_allclose(A3, [[0.36974721, 0.00305176, 0.04565099, 0.49683389, 0.36974721]],
                               rtol=1e-6)
