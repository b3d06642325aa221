"""kernels/small_gemm.py: a recurrent step's product, blocked only where OpenBLAS has its
small-matrix path, and equal to the whole product either way."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
import scipy

from dlcli.kernels import small_gemm, threads


def _lib(path, arch, api="openblas"):
    return SimpleNamespace(user_api="blas", internal_api=api, filepath=path, architecture=arch)


SCIPY_LIBS = os.path.dirname(os.path.realpath(scipy.__file__)) + ".libs"


@pytest.mark.parametrize("libs, small", [
    ([_lib(f"{SCIPY_LIBS}/libscipy_openblas-1.so", "SkylakeX")], True),
    ([_lib(f"{SCIPY_LIBS}/libscipy_openblas-1.so", "Cooperlake")], True),
    ([_lib(f"{SCIPY_LIBS}/libscipy_openblas-1.so", "Haswell")], False),
    ([_lib(f"{SCIPY_LIBS}/libscipy_openblas-1.so", "Zen")], False),
    ([_lib("/opt/lib/libmkl_rt.so", None, api="mkl")], False),
    ([], False),
    # numpy's wheel brings its own OpenBLAS copy; the one Numba's np.dot calls is SciPy's
    ([_lib("/x/site-packages/numpy.libs/libscipy_openblas64_-2.so", "Haswell"),
      _lib(f"{SCIPY_LIBS}/libscipy_openblas-1.so", "SkylakeX")], True),
    ([_lib("/x/site-packages/numpy.libs/libscipy_openblas64_-2.so", "SkylakeX"),
      _lib(f"{SCIPY_LIBS}/libscipy_openblas-1.so", "Haswell")], False),
    # one shared library (a conda environment): its own architecture decides
    ([_lib("/env/lib/libopenblasp-r0.3.so", "SapphireRapids")], True),
])
def test_the_small_matrix_path_follows_scipys_openblas_kernels(monkeypatch, libs, small):
    monkeypatch.setattr(threads, "_controller", lambda: SimpleNamespace(lib_controllers=libs))
    assert small_gemm.small_matrix_path() is small


def test_without_threadpoolctl_the_product_is_whole(monkeypatch):
    monkeypatch.setattr(threads, "_controller", lambda: None)
    assert small_gemm.small_matrix_path() is False


def test_the_rows_follow_this_machines_blas():
    assert small_gemm.DOT_ROWS == (8 if small_gemm.small_matrix_path() else 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", [1, 7, 8, 9, 16, 33, 128])
def test_dot_rows_is_the_whole_product(m, dtype):
    from numba import njit

    @njit
    def run(a, W, out):
        small_gemm._dot_rows(a, W, out)

    rng = np.random.default_rng(m)
    a, W = rng.standard_normal((m, 128)).astype(dtype), rng.standard_normal((128, 512)).astype(dtype)
    out = np.full((m, 512), np.nan, dtype)
    run(a, W, out)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out, a.astype(np.float64) @ W.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,K,N", [(1, 1, 1), (3, 5, 7), (4, 4, 8), (5, 131, 130), (13, 128, 512),
                                   (32, 7, 128), (6, 512, 128)])
def test_rows_dot_is_the_product_for_every_shape(m, K, N, dtype, monkeypatch):
    """`_rows_dot` compiled, and as Python with direct.py's `_convolve` as Python too (numpy then
    checks every index), over odd and even rows and whole groups of four terms and what is
    left; out starts as NaN, so a cell it did not write fails."""
    from numba import njit
    from dlcli.kernels import direct

    @njit
    def run(a, W, out):
        small_gemm._rows_dot(a, W, out)

    rng = np.random.default_rng(m * K + N)
    a, W = rng.standard_normal((m, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    want = a.astype(np.float64) @ W.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    out = np.full((m, N), np.nan, dtype)
    run(a, W, out)
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.sqrt(K))
    monkeypatch.setattr(small_gemm, "_convolve", direct._convolve.py_func)
    out = np.full((m, N), np.nan, dtype)
    small_gemm._rows_dot.py_func(a, W, out)
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.sqrt(K))
