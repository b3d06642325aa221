"""Winograd F(2x2, 3x3) with the whole batch's GEMMs split by tile position
(kernels/winograd_positions.py, gated in kernels/winograd.py `by_positions`): both passes
against numpy in float64 and float32, against the blocks split by examples, under 1 and 2
Numba threads and with more parts than threads (one worker running every part must not wait
for ever), the gate, and the conv2d layer on that path against PyTorch."""

import numpy as np
import pytest
from numba import get_num_threads, set_num_threads

from dlcli.kernels import winograd as kw, winograd_grad as kg, winograd_positions as kp
from dlcli.nn import conv_winograd
from dlcli.nn.conv import Conv2D
from test_conv import built, close, nchw, nhwc, oracle, run
from test_winograd import numpy_conv

# (m, H, W, C, K, pad, n_H, n_W): odd sizes (cropped last tiles), valid, padding 2 (output
# larger than the input), a negative pad (input cropped), m = 1, m = 3 and 5 (not a multiple
# of the parts), C != K both ways
SHAPES = [(3, 7, 5, 3, 4, 1, 7, 5), (2, 6, 6, 2, 5, 0, 4, 4), (1, 5, 8, 4, 3, 2, 7, 10),
          (2, 4, 4, 5, 2, -1, 2, 2), (5, 6, 8, 9, 6, 1, 6, 8), (4, 4, 6, 3, 2, 3, 8, 10),
          (1, 1, 1, 1, 1, 1, 1, 1)]


@pytest.fixture(params=[1, 2])
def threads(request):
    """Numba held to 1 thread, then 2 (if there are 2)."""
    before = get_num_threads()
    if request.param > before:
        pytest.skip("one Numba thread only")
    set_num_threads(request.param)
    yield request.param
    set_num_threads(before)


def tol(dtype):
    return 1e-9 if dtype == np.float64 else 1e-5


def transformed(W):
    U = np.empty((16,) + W.shape[2:], dtype=W.dtype)
    kw.filter_transform(W, U)
    return U


def forward(A, U, pad, Z, parts, moments=False, epilogue=None):
    """The position-split forward on `parts` parts: Z, and its acc."""
    m, n_H, n_W, K = Z.shape
    chunks = kp.chunks(m, parts)
    V, M = kp.scratch(m, n_H, n_W, A.shape[3], K, Z.dtype)
    acc = np.zeros((chunks, 3, n_W * K + 1 if moments else 0))
    epi = np.empty(0, dtype=Z.dtype) if epilogue is None else epilogue
    kp.convolve_positions_parallel(A, U, pad, pad, Z, V, M, parts, chunks, acc, epi, kp.counters())
    return Z, acc


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", SHAPES)
def test_forward_matches_numpy_and_the_blocks(threads, m, H, Wd, C, K, pad, n_H, n_W, dtype):
    rng = np.random.default_rng(0)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    U = transformed(W)
    expected = numpy_conv(A.astype(np.float64), W.astype(np.float64), pad, pad, n_H, n_W)
    blocks = kw.convolve(A, U, pad, pad, np.empty((m, n_H, n_W, K), dtype=dtype))
    for parts in (1, 2, 3):  # 3 parts on 1 or 2 threads: a worker runs two of them in turn
        Z, _ = forward(A, U, pad, np.full((m, n_H, n_W, K), np.nan, dtype=dtype), parts)
        close(Z, expected, tol(dtype))
        close(Z, blocks, tol(dtype))
    # the bias and relu in the output transform, as kernels/winograd.py's epilogue
    epi = np.append(rng.standard_normal(K), 0.0).astype(dtype)
    Z, _ = forward(A, U, pad, np.full((m, n_H, n_W, K), np.nan, dtype=dtype), 2, epilogue=epi)
    close(Z, np.maximum(expected + epi[:K].astype(np.float64), 0.0), tol(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", SHAPES[:5])
def test_forward_takes_the_batch_moments(threads, m, H, Wd, C, K, pad, n_H, n_W, dtype):
    """Each chunk's moments in its own row of acc: numpy's mean and variance of Z."""
    from dlcli.kernels.batchnorm import moments
    rng = np.random.default_rng(1)
    A = (rng.standard_normal((m, H, Wd, C)) + 20.0).astype(dtype)  # a mean far from zero
    U = transformed(rng.standard_normal((3, 3, C, K)).astype(dtype))
    for parts in (1, 2, 3):
        Z, acc = forward(A, U, pad, np.empty((m, n_H, n_W, K), dtype=dtype), parts, moments=True)
        mean, var = moments(acc, K)
        z = Z.astype(np.float64).reshape(-1, K)
        close(mean, z.mean(axis=0), 1e-12)
        close(var, z.var(axis=0), 1e-9)


def backward(A, dZ, U, W, pad, parts, input_grad=True, addend=None, A_out=None, slope=0.0):
    """The position-split backward: (dW, dA, db's chunks)."""
    m, n_H, n_W, K = dZ.shape
    C, dtype = A.shape[3], dZ.dtype
    chunks = kp.chunks(m, parts)
    V, M = kp.scratch(m, n_H, n_W, C, K, dtype)
    dU = np.full((1, 16, C, K), np.nan, dtype=dtype)
    dW = np.full(W.shape, np.nan, dtype=dtype)
    dA = np.full(A.shape, np.nan, dtype=dtype) if input_grad else np.zeros((1, 1, 1, 1), dtype=dtype)
    none = np.empty((0, 1, 1, 1), dtype=dtype)
    out = none if A_out is None else A_out
    db = np.full((chunks, K if A_out is not None else 0), np.nan, dtype=dtype)
    tH, tW = kw.tiles(n_H, n_W)
    zeroed = not kp.covers(A.shape[1], A.shape[2], tH, tW, pad, pad)
    kp.backward_positions_parallel(A, dZ, kg.transposed(U), pad, pad, V, M, parts, dU, dW, dA,
                                   input_grad, none if addend is None else addend, out,
                                   dtype.type(slope), db, zeroed, kp.counters())
    return dW, dA, db


def numpy_grads(A, W, dZ, pad):
    """dW and dA_prev of Z = numpy_conv(A, W) for the upstream dZ, in float64."""
    from test_winograd import numpy_conv_grads
    return numpy_conv_grads(*(x.astype(np.float64) for x in (A, W, dZ)), pad, pad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,H,Wd,C,K,pad,n_H,n_W", SHAPES)
def test_backward_matches_numpy(threads, m, H, Wd, C, K, pad, n_H, n_W, dtype):
    """dW and dA_prev; the filter gradient alone (dA untouched); an addend summed into dA."""
    rng = np.random.default_rng(2)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    dZ = rng.standard_normal((m, n_H, n_W, K)).astype(dtype)
    U = transformed(W)
    eW, eA = numpy_grads(A, W, dZ, pad)
    for parts in (1, 2, 3):
        dW, dA, _ = backward(A, dZ, U, W, pad, parts)
        close(dW, eW, tol(dtype))
        close(dA, eA, tol(dtype))
        dW_only, untouched, _ = backward(A, dZ, U, W, pad, parts, input_grad=False)
        np.testing.assert_array_equal(dW_only, dW)
        assert not untouched.any()
        plus = rng.standard_normal(A.shape).astype(dtype)
        _, dA_plus, _ = backward(A, dZ, U, W, pad, parts, addend=plus)
        close(dA_plus, eA + plus, tol(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_backward_folds_the_activation(threads, slope, dtype):
    """Given dA and the layer's output A, dZ = dA g'(A) is made in the gather and db summed per
    chunk: the same as the blocks' backward given the same."""
    m, H, Wd, C, K, pad = 5, 6, 7, 6, 9, 1
    rng = np.random.default_rng(3)
    A, W = rng.standard_normal((m, H, Wd, C)).astype(dtype), rng.standard_normal((3, 3, C, K)).astype(dtype)
    out = rng.standard_normal((m, H, Wd, K)).astype(dtype)  # the layer's output: its sign matters
    dA_out = rng.standard_normal(out.shape).astype(dtype)
    dZ = np.where(out > 0, dA_out, dA_out * dtype(slope))
    U = transformed(W)
    eW, eA = numpy_grads(A, W, dZ, pad)
    for parts in (1, 2, 3):
        dW, dA, db = backward(A, dA_out, U, W, pad, parts, A_out=out, slope=slope)
        close(dW, eW, tol(dtype))
        close(dA, eA, tol(dtype))
        close(db.sum(axis=0), dZ.astype(np.float64).sum(axis=(0, 1, 2)), tol(dtype))


def test_each_position_lands_at_its_own(threads):
    """U nonzero at one tile position k at a time: the split's output equals the blocks' for
    every k (a GEMM written to another position, or a position multiplied twice or never,
    changes Y = A^T M A)."""
    m, H, Wd, C, K = 3, 6, 8, 5, 7
    rng = np.random.default_rng(4)
    A = rng.standard_normal((m, H, Wd, C))
    U_all = transformed(rng.standard_normal((3, 3, C, K)))
    for k in range(16):
        U = np.zeros_like(U_all)
        U[k] = U_all[k]
        expected = np.empty((m, H, Wd, K))
        kw.convolve_blocks(A, U, 1, 1, expected, 3, 1, 1, np.zeros((1, 3, 0)), np.empty(0))
        for parts in (1, 2):
            Z, _ = forward(A, U, 1, np.full((m, H, Wd, K), np.nan), parts)
            close(Z, expected, 1e-12)
        assert np.abs(expected).max() > 0


def test_the_gate_takes_the_unets_deep_layers_only(monkeypatch):
    monkeypatch.setattr("numba.get_num_threads", lambda: 2)
    for m, H, Wd, C, K in [(8, 12, 16, 128, 128), (8, 12, 16, 256, 128), (8, 6, 8, 128, 256),
                           (8, 6, 8, 256, 256)]:
        assert kw.by_positions(m, H, Wd, C, K)
    for m, H, Wd, C, K in [(8, 12, 16, 64, 128),   # the U-Net's first 12x16 conv: U is small
                           (64, 32, 32, 32, 32),   # resnet_small
                           (64, 8, 8, 64, 64),
                           (256, 12, 16, 256, 256),  # the whole batch's tiles too many
                           (1, 2, 2, 128, 128)]:   # too little work to wake the threads
        assert not kw.by_positions(m, H, Wd, C, K)
    monkeypatch.setattr(kw, "POSITIONS", False)
    assert not kw.by_positions(8, 6, 8, 256, 256)
    monkeypatch.setattr(kw, "POSITIONS", True)
    monkeypatch.setattr("numba.get_num_threads", lambda: 1)
    assert not kw.by_positions(8, 6, 8, 256, 256)


@pytest.fixture
def positions(monkeypatch):
    """Every F(2x2) Winograd conv2d on the position split, whatever its size."""
    monkeypatch.setattr(conv_winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "FOUR_MIN_CHANNELS", 10 ** 6)
    monkeypatch.setattr(kw, "POSITIONS_MIN", 1)
    monkeypatch.setattr(kw, "POSITIONS_MAX", 1 << 40)
    monkeypatch.setattr(kw, "PARALLEL_MIN", 0)
    monkeypatch.setattr("numba.get_num_threads", lambda: 2)


@pytest.mark.torch
@pytest.mark.parametrize("m,n,padding,n_C_prev,activation", [
    (1, 6, "same", 3, "relu"), (3, 7, "valid", 4, "relu"), (3, 7, 2, 3, "linear"),
    (2, 6, "same", 5, "leaky_relu")])
def test_conv2d_on_positions_matches_torch(positions, m, n, padding, n_C_prev, activation):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(5).standard_normal((m, n, n + 1, n_C_prev))
    layer = built(Conv2D(4, 3, padding=padding, activation=activation), x.shape[1:])
    assert layer.winograd and not conv_winograd.four(layer) and not layer.split_backward
    assert kw.by_positions(m, *layer.output_shape[:2], n_C_prev, 4)
    y, dy, dx = run(layer, x)
    tx = nchw(torch, x)
    tW = torch.tensor(layer.params["W"]).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    tb = torch.tensor(layer.params["b"]).requires_grad_(True)
    p = 1 if padding == "same" else 0 if padding == "valid" else padding
    tz = F.conv2d(tx, tW, tb, padding=p)
    ty = {"relu": F.relu, "linear": lambda z: z,
          "leaky_relu": lambda z: F.leaky_relu(z, layer_slope(layer))}[activation](tz)
    close(y, nhwc(ty), 1e-9)
    gx, gW, gb = oracle(torch, ty, dy, tx, tW, tb)
    close(dx, gx.permute(0, 2, 3, 1), 1e-9)
    close(layer.grads["W"], gW.permute(2, 3, 1, 0), 1e-9)
    close(layer.grads["b"], gb, 1e-9)


def layer_slope(layer):
    from dlcli.nn.activations import slope
    return float(slope(layer.activation, np.float64))


def test_the_python_sizes_match_the_kernels():
    """`_stride` and `covers`, computed in Python for kernels/ahead.py's trace, against the
    kernels' own."""
    for n in range(0, 3000, 7):
        assert kp._stride(n) == kw.position_stride(n)
    for H, W, pad in [(7, 5, 1), (6, 6, 0), (5, 8, 2), (4, 4, -1), (4, 6, 3), (1, 1, 1)]:
        for n_H, n_W in [(H + 2 * pad - 2, W + 2 * pad - 2), (H, W)]:
            if min(n_H, n_W) < 1:
                continue
            tH, tW = kw.tiles(n_H, n_W)
            assert kp.covers(H, W, tH, tW, pad, pad) == kg.covers(H, W, tH, tW, pad, pad)


def test_the_scratch_is_kept_within_a_thread_and_not_shared_between_threads():
    """V and M come from one array kept from call to call, per Python thread: two models
    trained in threads of one process (a Dask worker's trials) must not write each other's."""
    import threading

    V1, M1 = kp.scratch(2, 6, 8, 16, 32, np.float32)
    V2, _ = kp.scratch(1, 6, 8, 16, 32, np.float32)
    assert V1.base is V2.base and np.shares_memory(V1, V2)  # kept, not mapped anew
    assert not np.shares_memory(V1, M1)
    other = []
    t = threading.Thread(target=lambda: other.append(kp.scratch(2, 6, 8, 16, 32, np.float32)))
    t.start()
    t.join()
    assert not np.shares_memory(other[0][0], V1) and not np.shares_memory(other[0][1], M1)
