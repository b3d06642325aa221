"""Helpers shared by the test files."""

import numpy as np


def numerical_grad(f, array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d array by two-sided differences, one entry at a time, changing `array` in place
    (and putting it back): f reads the array it closes over."""
    grad = np.empty(array.shape, dtype=np.float64)
    for i in np.ndindex(array.shape):
        original = array[i]
        array[i] = original + eps
        plus = f()
        array[i] = original - eps
        minus = f()
        array[i] = original
        grad[i] = (plus - minus) / (2 * eps)
    return grad
