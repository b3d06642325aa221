"""Row-split GEMMs (kernels/gemm.py) against numpy, and the layer that calls them
(conv2d_transpose) equal on the split path and on np.matmul."""

import numpy as np
import pytest

from dlcli.kernels import gemm
from dlcli.nn.conv import Conv2DTranspose
from test_conv import built, close, run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 3, 97])  # fewer rows than threads, uneven parts
def test_split_gemms_match_numpy(monkeypatch, rows, dtype):
    monkeypatch.setattr(gemm, "PARALLEL_MIN", 0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((rows, 7)).astype(dtype), rng.standard_normal((7, 5)).astype(dtype)
    c = rng.standard_normal((rows, 5)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    close(gemm.matmul(a, b, np.empty((rows, 5), dtype=dtype)), a @ b, tol)
    close(gemm.matmul(c, b.T, np.empty((rows, 7), dtype=dtype)), c @ b.T, tol)  # b transposed
    close(gemm.matmul_tn(a, c, np.full((7, 5), np.nan, dtype=dtype)), a.T @ c, tol)


@pytest.mark.parametrize("layer", [
    lambda: Conv2DTranspose(3, 3, stride=2, padding="same", activation="relu"),
    lambda: Conv2DTranspose(2, 2, stride=2)])
def test_layers_equal_on_the_split_path(monkeypatch, layer):
    x = np.random.default_rng(4).standard_normal((3, 5, 6, 4))
    plain, split = (built(layer(), x.shape[1:]) for _ in range(2))
    expected = run(plain, x)
    monkeypatch.setattr(gemm, "PARALLEL_MIN", 0)
    for a, b in zip(run(split, x), expected):
        close(a, b, 1e-12)
    for key, grad in plain.grads.items():
        close(split.grads[key], grad, 1e-12)
