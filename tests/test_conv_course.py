"""The course's checks (C4 W1 "Convolution model - step by step", COURSE_NUMBERS.md section 8)."""

import numpy as np
import pytest

from dlcli.nn.base import BuildContext
from dlcli.nn.conv import AvgPool, Conv2D, MaxPool


def printed(actual, expected):
    """Equal to the notebook's printout, which rounds to 8 decimals."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=5.1e-9)


def course_conv(A_prev, W, b, pad, stride):
    layer = Conv2D(W.shape[3], W.shape[0], stride=stride, padding=pad)
    layer.build(A_prev.shape[1:], BuildContext(dtype=np.dtype(np.float64)))
    layer.params["W"][...] = W
    layer.params["b"][...] = b.reshape(-1)
    return layer


def pool(cls, A_prev, f, stride):
    layer = cls(f, stride)
    layer.build(A_prev.shape[1:], BuildContext(dtype=np.dtype(np.float64)))
    return layer


def test_conv_forward():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = course_conv(A_prev, W, b, pad=1, stride=2).forward(A_prev, True)
    assert Z.shape == (2, 3, 4, 8)
    assert np.mean(Z) == pytest.approx(0.5511276474566768, rel=1e-12)
    printed(Z[0, 2, 1], [-2.17796037, 8.07171329, -0.5772704, 3.36286738,
                         4.48113645, -2.89198428, 10.99288867, 3.03171932])


def test_conv_backward():
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    layer = course_conv(A_prev, W, b, pad=2, stride=2)
    Z = layer.forward(A_prev, True)
    assert np.mean(Z) == pytest.approx(0.04899520352885578, rel=1e-12)
    dA = layer.backward(Z)
    assert np.mean(dA) == pytest.approx(1.4524377775388075, rel=1e-12)
    assert np.mean(layer.grads["W"]) == pytest.approx(1.7269914583139097, rel=1e-12)
    assert np.mean(layer.grads["b"]) == pytest.approx(7.839232564616838, rel=1e-12)


def test_pool_forward_stride_1():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A_max = pool(MaxPool, A_prev, 3, 1).forward(A_prev, False)
    A_avg = pool(AvgPool, A_prev, 3, 1).forward(A_prev, False)
    assert A_max.shape == A_avg.shape == (2, 3, 3, 3)
    printed(A_max[1, 1], [[1.96710175, 0.84616065, 1.27375593],
                          [1.96710175, 0.84616065, 1.23616403],
                          [1.62765075, 1.12141771, 1.2245077]])
    printed(A_avg[1, 1], [[0.44497696, -0.00261695, -0.31040307],
                          [0.50811474, -0.23493734, -0.23961183],
                          [0.11872677, 0.17255229, -0.22112197]])


def test_pool_forward_stride_2():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A_max = pool(MaxPool, A_prev, 3, 2).forward(A_prev, False)
    A_avg = pool(AvgPool, A_prev, 3, 2).forward(A_prev, False)
    assert A_max.shape == A_avg.shape == (2, 2, 2, 3)
    printed(A_max[0], [[[1.74481176, 0.90159072, 1.65980218], [1.74481176, 1.6924546, 1.65980218]],
                       [[1.13162939, 1.51981682, 2.18557541], [1.13162939, 1.6924546, 2.18557541]]])
    printed(A_avg[1], [[[-0.17313416, 0.32377198, -0.34317572], [0.02030094, 0.14141479, -0.01231585]],
                       [[0.42944926, 0.08446996, -0.27290905], [0.15077452, 0.28911175, 0.00123239]]])


def test_pool_backward():
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    max_layer, avg_layer = pool(MaxPool, A_prev, 2, 1), pool(AvgPool, A_prev, 2, 1)
    assert max_layer.forward(A_prev, True).shape == (5, 4, 2, 2)
    avg_layer.forward(A_prev, True)
    dA = np.random.randn(5, 4, 2, 2)
    assert np.mean(dA) == pytest.approx(0.14571390272918056, rel=1e-12)
    printed(max_layer.backward(dA)[1, 1], [[0, 0], [5.05844394, -1.68282702], [0, 0]])
    printed(avg_layer.backward(dA)[1, 1], [[0.08485462, 0.2787552], [1.26461098, -0.25749373],
                                           [1.17975636, -0.53624893]])
