"""Recurrent layers against the course's formulas written in torch ops (float64 autograd),
finite differences, numpy references of the kernels, and the course's numbers (COURSE_NUMBERS §16)."""

import itertools

import numpy as np
import pytest

from conftest import numerical_grad
from dlcli.nn import build_layer
from dlcli.nn.base import BuildContext

N_X, N_A = 3, 4


def _layer(spec, n_x=N_X, T=7, seed=0):
    layer = build_layer(spec)
    layer.build((T, n_x), BuildContext(dtype=np.dtype(np.float64), rng=np.random.default_rng(seed)))
    for p in layer.params.values():  # biases start at 0: give them values so they are tested
        p += 0.1 * np.random.default_rng(seed + 1).standard_normal(p.shape)
    return layer


def _all_params(layer):
    from dlcli.nn.base import walk
    return {prefix + k: (l, k) for prefix, l in walk(layer) for k in l.params}


def _mask(m, T, rng):
    lengths = rng.integers(1, T + 1, size=m)
    lengths[0] = T
    return np.arange(T)[None, :] < lengths[:, None]


# -- the course's formulas in torch ------------------------------------------------------------
def _torch_direction(kind, x, P, mask, reverse, act="tanh"):
    """States (m, T, n_a) of one direction; the backward one aligned by step."""
    import torch
    m, T, _ = x.shape
    n = P[next(iter(P))].shape[0]
    a = torch.zeros(m, n, dtype=torch.float64)
    c = torch.zeros(m, n, dtype=torch.float64)
    outs = [None] * T
    g = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[act]
    for t in (reversed(range(T)) if reverse else range(T)):
        xt = x[:, t]
        keep = mask[:, t:t + 1]
        if kind == "rnn":
            a_new = g(a @ P["Waa"].T + xt @ P["Wax"].T + P["ba"].T)
            c_new = c
        elif kind == "lstm":
            concat = torch.cat([a, xt], 1)
            Gf = torch.sigmoid(concat @ P["Wf"].T + P["bf"].T)
            Gi = torch.sigmoid(concat @ P["Wi"].T + P["bi"].T)
            cc = torch.tanh(concat @ P["Wc"].T + P["bc"].T)
            c_new = Gf * c + Gi * cc
            Go = torch.sigmoid(concat @ P["Wo"].T + P["bo"].T)
            a_new = Go * torch.tanh(c_new)
        else:  # the lectures' GRU: Gr inside the candidate
            concat = torch.cat([a, xt], 1)
            Gr = torch.sigmoid(concat @ P["Wr"].T + P["br"].T)
            Gu = torch.sigmoid(concat @ P["Wu"].T + P["bu"].T)
            cc = torch.tanh(torch.cat([Gr * a, xt], 1) @ P["Wc"].T + P["bc"].T)
            a_new = Gu * cc + (1 - Gu) * a
            c_new = c
        a = torch.where(keep, a_new, a)
        c = torch.where(keep, c_new, c)
        outs[t] = a
    return torch.stack(outs, 1), a


def _torch_layer(spec, x, params, mask):
    """Output of a (possibly bidirectional) layer spec, params: name -> torch tensor."""
    import torch
    if spec["type"] == "bidirectional":
        inner = spec["layer"]
        parts = []
        for name, rev in (("forward", False), ("backward", True)):
            P = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(name + ".")}
            seq, last = _torch_direction(inner["type"], x, P, mask, rev, inner.get("activation", "tanh"))
            parts.append(seq if inner.get("return_sequences") else last)
        return torch.cat(parts, -1)
    seq, last = _torch_direction(spec["type"], x, params, mask, False, spec.get("activation", "tanh"))
    return seq if spec.get("return_sequences") else last


# batch 9 (>= nn.recurrent_cells.SPLIT_MIN_EXAMPLES) takes the gated cells' `*_split` kernels
GRID = list(itertools.product(["rnn", "gru", "lstm"], [1, 3, 9], [1, 7], [False, True], [False, True],
                              [False, True]))


def _matches_torch(spec, m, T, masked, rng):
    """The layer's output, input gradient and parameter gradients against the course's
    formulas in torch (float64 autograd), to 1e-9."""
    import torch
    layer = _layer(spec, T=T)
    x = rng.standard_normal((m, T, N_X))
    mask = _mask(m, T, rng) if masked else np.ones((m, T), bool)
    layer.mask = mask if masked else None
    y = layer.forward(x, True)
    R = rng.standard_normal(y.shape)
    dx = layer.backward(R)

    named = _all_params(layer)
    tp = {name: torch.tensor(l.params[k], requires_grad=True) for name, (l, k) in named.items()}
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_layer(spec, tx, tp, torch.tensor(mask)[..., None].expand(m, T, 1)[..., 0])
    (ty * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, (l, k) in named.items():
        np.testing.assert_allclose(l.grads[k], tp[name].grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("kind,m,T,sequences,masked,bidirectional", GRID)
def test_layer_matches_torch(kind, m, T, sequences, masked, bidirectional):
    inner = {"type": kind, "units": N_A, "return_sequences": sequences}
    spec = {"type": "bidirectional", "layer": inner} if bidirectional else inner
    _matches_torch(spec, m, T, masked, np.random.default_rng(m * 100 + T))


@pytest.mark.torch
@pytest.mark.parametrize("kind,m", [("rnn", 3), ("gru", 5), ("lstm", 3), ("lstm", 9), ("lstm", 21),
                                    ("gru", 21)])
def test_wide_layers_take_the_rows_product_and_match_torch(kind, m):
    """128 units: every step's product (forward into 128-512 columns, backward into 128) is
    kernels/small_gemm.py's `_rows_dot` where OpenBLAS has no small-matrix path: whole groups
    of four rows, the rows left over (m 3, 5, 9, 21), one block and the split kernels' blocks;
    masked steps too."""
    from dlcli.kernels import small_gemm
    n_a = 128
    # the premise: on this machine these sizes take `_rows_dot`, or the small-matrix path's blocks
    assert small_gemm.DOT_ROWS or (m <= small_gemm.ROWS_MAX and n_a >= small_gemm.COLUMNS_MIN)
    _matches_torch({"type": kind, "units": n_a, "return_sequences": True}, m, 3, True,
                   np.random.default_rng(m))


@pytest.mark.torch
@pytest.mark.parametrize("kind,m", [("rnn", 3), ("gru", 3), ("lstm", 3), ("lstm", 11)])
def test_stacked_with_embedding_and_dense_matches_torch(kind, m):
    """embedding -> kind (sequences) -> kind -> dense, padded ids, through the Model's mask; an
    LSTM takes the embedding in (`Embedding.fuse_next`), serial (m 3) and split (m 11); id -2
    (no token, not masked) at the first step."""
    import torch
    from dlcli.nn.model import build_model
    T, V = 6, 9
    model = build_model({"layers": [{"type": "embedding", "dim": 5, "vocab": V},
                                    {"type": kind, "units": 4, "return_sequences": True},
                                    {"type": kind, "units": 3, "return_sequences": True},
                                    {"type": "dense", "units": V, "activation": "softmax"}]},
                        input_shape=(T,), dtype="float64", rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    for _, layer, key in model.trainable():
        layer.params[key] += 0.1 * rng.standard_normal(layer.params[key].shape)
    assert (model.layers[0].fused is model.layers[1]) == (kind == "lstm")
    ids = rng.integers(0, V, size=(m, T))
    mask = _mask(m, T, rng)
    ids[~mask] = -1
    ids[:, 0] = -2
    y = rng.integers(0, V, size=(m, T))
    y[~mask] = -1
    cost = model.cost(ids, y)
    model.backward()

    names = {name: (layer, key) for name, layer, key in model.trainable()}
    tp = {name: torch.tensor(l.params[k], requires_grad=True) for name, (l, k) in names.items()}
    tmask = torch.tensor(mask)
    e = tp["0.E"].T[torch.tensor(np.maximum(ids, 0))] * torch.tensor(ids >= 0)[..., None]
    h, _ = _torch_direction(kind, e, {k[2:]: v for k, v in tp.items() if k.startswith("1.")}, tmask, False)
    h, _ = _torch_direction(kind, h, {k[2:]: v for k, v in tp.items() if k.startswith("2.")}, tmask, False)
    z = h @ tp["3.W"].T + tp["3.b"].T
    logp = torch.log_softmax(z, -1)
    ty = torch.tensor(np.maximum(y, 0))
    tcost = -(torch.gather(logp, -1, ty[..., None])[..., 0] * tmask).sum() / m
    tcost.backward()
    assert cost == pytest.approx(tcost.item(), rel=1e-12)
    for name, (l, k) in names.items():
        np.testing.assert_allclose(l.grads[k], tp[name].grad.numpy(), rtol=1e-9, atol=1e-13,
                                   err_msg=name)


@pytest.mark.parametrize("m", [1, 3, 9])
def test_lstm_without_input_gradient_has_the_same_weight_gradients(m):
    """A first LSTM (no layer before it wants dX) skips its dZ Wx GEMM: backward gives None and
    the same weight gradients (m 1 numpy, 3 `stacked_grads_split`, 9 the split kernels)."""
    rng = np.random.default_rng(m)
    x = rng.standard_normal((m, 7, N_X))
    dy = rng.standard_normal((m, 7, N_A))
    grads = []
    for wanted in (True, False):
        layer = _layer({"type": "lstm", "units": N_A, "return_sequences": True})
        layer.needs_input_grad = wanted
        layer.forward(x, True)
        dx = layer.backward(dy)
        assert (dx is None) != wanted
        grads.append({k: g.copy() for k, g in layer.grads.items()})
    for k in grads[0]:
        np.testing.assert_array_equal(grads[1][k], grads[0][k])


@pytest.mark.parametrize("m,sequences", [(1, False), (3, True), (9, False), (12, True)])
def test_fused_embedding_equals_the_embedding_apart(m, sequences):
    """embedding -> lstm with the embedding fused in (the LSTM's table rows) and apart (its
    output through the input GEMM): outputs and every gradient alike in float64, a training
    step and an inference pass, padded ids and ids -2 included."""
    from dlcli.nn.model import build_model
    T, V = 7, 6
    outs = []
    for fused in (True, False):
        model = build_model({"layers": [{"type": "embedding", "dim": 4, "vocab": V},
                                        {"type": "lstm", "units": 5, "return_sequences": sequences},
                                        {"type": "dense", "units": V, "activation": "softmax"}]},
                            input_shape=(T,), dtype="float64", rng=np.random.default_rng(5))
        for _, layer, key in model.trainable():
            layer.params[key] += 0.1 * np.random.default_rng(6).standard_normal(layer.params[key].shape)
        if not fused:
            model.layers[0].fused, model.layers[1].embedding = None, None
        rng = np.random.default_rng(7)
        ids = rng.integers(-2, V, size=(m, T))
        ids[0] = np.arange(T) % V  # one example with every token and no padding
        y = rng.integers(0, V, size=(m, T) if sequences else (m,))
        if sequences:
            y[ids == -1] = -1
        cost = model.cost(ids, y)
        model.backward()
        grads = [layer.grads[key].copy() for _, layer, key in model.trainable()]
        outs.append((cost, model.forward(ids, False), *grads))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_bptt_by_finite_differences(kind):
    rng = np.random.default_rng(7)
    layer = _layer({"type": "bidirectional", "layer": {"type": kind, "units": 3, "return_sequences": True}},
                   n_x=2, T=4)
    x = rng.standard_normal((2, 4, 2))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    R = rng.standard_normal((2, 4, 6))

    def f():
        layer.mask = mask
        return float(np.sum(layer.forward(x, True) * R))
    f()
    dx = layer.backward(R)
    np.testing.assert_allclose(dx, numerical_grad(f, x), rtol=1e-6, atol=1e-8)
    for name, (l, k) in _all_params(layer).items():
        f()
        l.backward(R[..., :3] if name.startswith("forward") else R[..., 3:])
        grad = l.grads[k].copy()
        np.testing.assert_allclose(grad, numerical_grad(f, l.params[k]), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_masked_many_to_one_ignores_padding():
    """Padding after a sequence changes neither the last state nor any gradient."""
    rng = np.random.default_rng(2)
    layer = _layer({"type": "lstm", "units": 4}, T=5)
    x = rng.standard_normal((1, 3, N_X))
    padded = np.concatenate([x, rng.standard_normal((1, 2, N_X))], axis=1)
    short = layer.forward(x, True)
    layer.backward(np.ones_like(short))
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.mask = np.array([[1, 1, 1, 0, 0]], bool)
    long = layer.forward(padded, True)
    dx = layer.backward(np.ones_like(long))
    np.testing.assert_allclose(long, short, rtol=1e-12)
    assert np.all(dx[:, 3:] == 0)
    for k in grads:
        np.testing.assert_allclose(layer.grads[k], grads[k], rtol=1e-12, atol=1e-15)


# -- kernels against numpy ----------------------------------------------------------------------
def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("dtype,tokens,order", [(np.float32, False, 0), (np.float64, False, 0),
                                                (np.float32, True, 1), (np.float64, True, 2),
                                                (np.float64, False, 1)])
def test_lstm_kernel_matches_numpy_loop(dtype, tokens, order):
    """tokens: the fused embedding's form, no x in H (n_x 0) and each step's row of a table
    (R, 4n) in place of the bias; order: A time-major (0), batch-first (1), batch-first with
    time reversed (2)."""
    from dlcli.kernels import recurrent as k
    rng = np.random.default_rng(0)
    T, m, n = 5, 4, 6
    n_x = 0 if tokens else 3
    X = rng.standard_normal((T, m, n_x)).astype(dtype)
    W_T = (0.3 * rng.standard_normal((n + n_x, 4 * n))).astype(dtype)
    xb = rng.standard_normal((7 if tokens else 1, 4 * n)).astype(dtype)
    idx = rng.integers(0, xb.shape[0], size=(T, m)).astype(np.intp)
    a0, c0 = (rng.standard_normal((m, n)).astype(dtype) for _ in range(2))
    mask = np.ones((T, m), np.uint8)
    mask[3:, 1] = 0
    A_out, C = np.empty((m, T, n) if order else (T, m, n), dtype), np.empty((T, m, n), dtype)
    G = np.empty((T, m, 4 * n), dtype)
    H2 = np.empty((T * m, n + n_x), dtype)  # one block: time-major
    H = H2.reshape(T, m, -1)
    H[:, :, n:], H[0, :, :n] = X, a0
    k.lstm_forward(H2, W_T, xb, idx, c0, mask, A_out, order, C, G)
    A = {0: A_out, 1: A_out.transpose(1, 0, 2), 2: A_out.transpose(1, 0, 2)[::-1]}[order]
    a, c = a0.astype(np.float64), c0.astype(np.float64)
    for t in range(T):
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(H[t, :, :n], a, rtol=tol, atol=tol)  # H keeps [a<t-1>, x<t>]
        np.testing.assert_array_equal(H[t, :, n:], X[t])
        z = np.concatenate([a, X[t]], axis=1) @ W_T + xb[idx[t]]
        f, i, cc, o = (_np_sigmoid(z[:, :n]), _np_sigmoid(z[:, n:2 * n]), np.tanh(z[:, 2 * n:3 * n]),
                       _np_sigmoid(z[:, 3 * n:]))
        keep = mask[t][:, None] == 1
        c = np.where(keep, f * c + i * cc, c)
        a = np.where(keep, o * np.tanh(c), a)
        np.testing.assert_allclose(A[t], a, rtol=tol, atol=tol)
        np.testing.assert_allclose(C[t], c, rtol=tol, atol=tol)


def test_vectorizable_sigmoid_and_tanh_match_numpy():
    from numba import njit

    from dlcli.kernels import recurrent as k

    @njit(error_model="numpy")
    def both(x, s, t):
        for i in range(x.size):
            s[i] = k._sigmoid(x[i])
            t[i] = k._tanh(x[i])

    x = np.concatenate([np.linspace(-700, 700, 20001), np.geomspace(1e-300, 40, 5000),
                        -np.geomspace(1e-300, 40, 5000), [0.0, 0.3465, 0.3466, -0.3466]])
    s, t = np.empty_like(x), np.empty_like(x)
    both(x, s, t)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-x)), rtol=2e-15, atol=0)
    np.testing.assert_allclose(t, np.tanh(x), rtol=2e-15, atol=0)
    x32 = x.astype(np.float32)
    s32, t32 = np.empty_like(x32), np.empty_like(x32)
    both(x32, s32, t32)
    np.testing.assert_allclose(t32, np.tanh(x32.astype(np.float64)), rtol=1e-7, atol=1e-38)



def test_float32_gates_are_computed_in_float32_to_a_few_ulp():
    """float32 values take the float32 sigmoid / tanh (16 lanes a vector); float64 ones the
    float64 functions above, unchanged."""
    from numba import njit

    from dlcli.kernels import recurrent as k

    @njit(error_model="numpy")
    def both(x, s, t):
        for i in range(x.size):
            s[i] = k._gate_sigmoid(x[i])
            t[i] = k._gate_tanh(x[i])

    x = np.concatenate([np.linspace(-700, 700, 20001), np.geomspace(1e-30, 40, 5000),
                        -np.geomspace(1e-30, 40, 5000), [0.0, 0.3465, 0.3466, -0.3466, 8.9, 9.1]])
    x32 = x.astype(np.float32)
    s32, t32 = np.empty_like(x32), np.empty_like(x32)
    both(x32, s32, t32)
    x64 = x32.astype(np.float64)
    sig = 1 / (1 + np.exp(-x64))
    np.testing.assert_allclose(s32, sig, rtol=3e-7, atol=2e-38)  # clamped at exp(-87)
    np.testing.assert_allclose(t32, np.tanh(x64), rtol=3e-7, atol=1e-38)
    assert np.all(s32[x64 > 0] >= 0.5) and np.all(s32[x64 < 0] <= 0.5)
    s, t = np.empty_like(x), np.empty_like(x)
    both(x, s, t)
    np.testing.assert_array_equal(s, [k._sigmoid(v) for v in x])
    np.testing.assert_array_equal(t, [k._tanh(v) for v in x])

@pytest.mark.parametrize("kind,parts,tokens,order", [
    ("lstm", 2, False, 0), ("lstm", 3, False, 1), ("lstm", 5, False, 2), ("lstm", 2, True, 1),
    ("lstm", 5, True, 2), ("gru", 2, False, 0), ("gru", 3, False, 0)])
def test_split_kernels_equal_the_serial_ones(kind, parts, tokens, order):
    """tokens: the fused embedding's form (H only [a<t-1>], a table row a step, its gradient
    scattered by row instead of dX); order: the split kernels' A and dA batch-first (1), and
    reversed in time (2), against the serial kernels' time-major."""
    from dlcli.kernels import recurrent as k
    from dlcli.kernels.embedded import scatter_rows
    rng = np.random.default_rng(2)
    T, m, n = 6, 11, 5
    G_n = 4 if kind == "lstm" else 3
    XZ = rng.standard_normal((T, m, G_n * n))
    W = 0.3 * rng.standard_normal((G_n * n, n))
    c0, a0 = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    mask = (rng.random((T, m)) < 0.8).astype(np.uint8)
    dA = rng.standard_normal((T, m, n))
    dlast = rng.standard_normal((2, m, n))
    R = 4 if tokens else 1
    xb = rng.standard_normal((R, 4 * n))
    idx = rng.integers(0, R, size=(T, m)).astype(np.intp)
    n_x = 0 if tokens else n
    outs = []
    from numba import get_num_threads
    for split in (False, True):
        extra = (parts,) if split else ()
        if split and kind == "lstm":
            extra = (parts, get_num_threads())
        if kind == "lstm":
            from dlcli.nn.recurrent_cells import _blocked, _blocks
            blocks = _blocks(m, parts if split else 1)
            o = order if split else 0
            A, C, G = np.empty((m, T, n) if o else (T, m, n)), np.empty((T, m, n)), np.empty((T, m, 4 * n))
            tm_view = {0: lambda a: a, 1: lambda a: a.transpose(1, 0, 2),
                       2: lambda a: a.transpose(1, 0, 2)[::-1]}[o]  # time-major view of A, dA
            dA_o = np.ascontiguousarray({0: dA, 1: dA.transpose(1, 0, 2),
                                         2: dA[::-1].transpose(1, 0, 2)}[o])
            H = np.empty((T * m, n + n_x))  # n_x = n: XZ's values read as inputs; blocked
            for lo, hi in blocks:
                Hp = _blocked(H, T, lo, hi)
                Hp[:, :, n:], Hp[0, :, :n] = XZ[:, lo:hi, :n_x], a0[lo:hi]
            Wx = 0.3 * W[::-1][:, :n_x]
            W_T = np.ascontiguousarray(np.concatenate([W, Wx], axis=1).T)
            fwd = k.lstm_forward_split if split else k.lstm_forward
            fwd(H, W_T, xb, idx, c0, mask, A, o, C, G, *extra)
            A = tm_view(A)
            da, dc, dZ = dlast[0].copy(), dlast[1].copy(), np.empty((T * m, 4 * n))
            dW, db = np.ones((4 * n, 2 * n)), np.ones(4 * n)
            dX = np.empty((0 if tokens else T * m, n_x))
            dxb = np.zeros((R, 4 * n))
            if split:  # the weight gradients in the loop's region
                part_dxb = np.empty((parts, R if tokens else 0, 4 * n))
                k.lstm_backward_split(dA_o, o, C, G, c0, W, mask, da, dc, dZ, H, np.ascontiguousarray(Wx),
                                      dW, db, dX, np.empty((parts, 4 * n, n + n_x)), idx, part_dxb,
                                      *extra)
                if tokens:
                    dxb = part_dxb.sum(axis=0)
            else:
                k.lstm_backward(dA_o, o, C, G, c0, W, mask, da, dc, dZ)
                dW[:, :n + n_x] += dZ.T @ H
                db += dZ.sum(axis=0)
                if tokens:
                    scatter_rows(dZ, idx, T, 0, m, dxb)
                else:
                    dX = dZ @ Wx
            tm = [np.concatenate([_blocked(a, T, lo, hi) for lo, hi in blocks], axis=1)
                  for a in ((H, dZ) if tokens else (H, dZ, dX))]  # back to time-major
            if tokens:  # against numpy: every step's dZ row into its table row
                want = np.zeros((R, 4 * n))
                np.add.at(want, idx.reshape(-1), tm[1].reshape(T * m, -1))
                np.testing.assert_allclose(dxb, want, rtol=1e-12, atol=1e-13)
            outs.append((A, C, G, *tm, da, dc, dW, db, dxb))
        else:
            C, G, RC = np.empty((T, m, n)), np.empty((T, m, 3 * n)), np.empty((T, m, n))
            Wur, Wc = np.ascontiguousarray(W[:2 * n]), np.ascontiguousarray(W[2 * n:])
            fwd = k.gru_forward_split if split else k.gru_forward
            fwd(XZ, np.ascontiguousarray(Wur.T), np.ascontiguousarray(Wc.T), c0, mask, C, G, RC, *extra)
            dc, dZur, dZc = dlast[0].copy(), np.empty((T, m, 2 * n)), np.empty((T, m, n))
            bwd = k.gru_backward_split if split else k.gru_backward
            bwd(dA, C, G, c0, Wur, Wc, mask, dc, dZur, dZc, *extra)
            outs.append((C, G, RC, dc, dZur, dZc))
    for serial, split in zip(*outs):
        np.testing.assert_allclose(split, serial, rtol=1e-12, atol=1e-14)


def test_gru_and_rnn_kernels_match_numpy_loop():
    from dlcli.kernels import recurrent as k
    rng = np.random.default_rng(1)
    T, m, n = 4, 3, 5
    XZ = rng.standard_normal((T, m, 3 * n))
    Wur_T, Wc_T = 0.3 * rng.standard_normal((n, 2 * n)), 0.3 * rng.standard_normal((n, n))
    c0 = rng.standard_normal((m, n))
    mask = np.ones((T, m), np.uint8)
    C, RC, G = np.empty((T, m, n)), np.empty((T, m, n)), np.empty((T, m, 3 * n))
    k.gru_forward(XZ, Wur_T, Wc_T, c0, mask, C, G, RC)
    c = c0
    for t in range(T):
        zur = c @ Wur_T + XZ[t, :, :2 * n]
        u, r = _np_sigmoid(zur[:, :n]), _np_sigmoid(zur[:, n:])
        cc = np.tanh((r * c) @ Wc_T + XZ[t, :, 2 * n:])
        c = u * cc + (1 - u) * c
        np.testing.assert_allclose(C[t], c, rtol=1e-12)
    XZ1 = rng.standard_normal((T, m, n))
    A = np.empty((T, m, n))
    k.rnn_forward(XZ1, Wc_T, c0, mask, k.ACTIVATION_CODES["relu"], A)
    a = c0
    for t in range(T):
        a = np.maximum(a @ Wc_T + XZ1[t], 0)
        np.testing.assert_allclose(A[t], a, rtol=1e-12)


# -- the course's numbers (COURSE_NUMBERS §16), through the kernels -----------------------------
def _softmax_rows(z):
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


def _cell(kind, params):
    from dlcli.nn.recurrent import LSTMCell, RNNCell
    n_a = params["Waa" if kind == "rnn" else "Wf"].shape[0]
    n_x = (params["Wax"] if kind == "rnn" else params["Wf"]).shape[1] - (0 if kind == "rnn" else n_a)
    cell = RNNCell(n_a) if kind == "rnn" else LSTMCell(n_a)
    cell.build(n_x, BuildContext(dtype=np.dtype(np.float64)))
    for k, v in params.items():
        cell.params[k][...] = v
    return cell


def test_course_rnn_cell_forward():
    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    Waa, Wax, Wya = np.random.randn(5, 5), np.random.randn(5, 3), np.random.randn(2, 5)
    ba, by = np.random.randn(5, 1), np.random.randn(2, 1)
    cell = _cell("rnn", {"Waa": Waa, "Wax": Wax, "ba": ba})
    A, _ = cell.forward(np.ascontiguousarray(xt.T[None]), (a_prev.T,), np.ones((1, 10), np.uint8))
    a_next = A[0].T
    yt = _softmax_rows(Wya @ a_next + by)
    np.testing.assert_allclose(a_next[4], [0.59584544, 0.18141802, 0.61311866, 0.99808218, 0.85016201,
                                           0.99980978, -0.18887155, 0.99815551, 0.6531151, 0.82872037],
                               rtol=1e-7)
    np.testing.assert_allclose(yt[1], [0.9888161, 0.01682021, 0.21140899, 0.36817467, 0.98988387,
                                       0.88945212, 0.36920224, 0.9966312, 0.9982559, 0.17746526],
                               rtol=1e-6)


def _course_lstm_params():
    Wf, bf = np.random.randn(5, 8), np.random.randn(5, 1)
    Wi, bi = np.random.randn(5, 8), np.random.randn(5, 1)
    Wo, bo = np.random.randn(5, 8), np.random.randn(5, 1)
    Wc, bc = np.random.randn(5, 8), np.random.randn(5, 1)
    Wy, by = np.random.randn(2, 5), np.random.randn(2, 1)
    return {"Wf": Wf, "bf": bf, "Wi": Wi, "bi": bi, "Wo": Wo, "bo": bo, "Wc": Wc, "bc": bc}, Wy, by


def test_course_lstm_cell_forward():
    np.random.seed(1)
    xt, a_prev, c_prev = np.random.randn(3, 10), np.random.randn(5, 10), np.random.randn(5, 10)
    params, Wy, by = _course_lstm_params()
    cell = _cell("lstm", params)
    A, run = cell.forward(np.ascontiguousarray(xt.T[None]), (a_prev.T, c_prev.T),
                          np.ones((1, 10), np.uint8))
    a_next, c_next = A[0].T, run.C[0].T
    yt = _softmax_rows(Wy @ a_next + by)
    np.testing.assert_allclose(a_next[4], [-0.66408471, 0.0036921, 0.02088357, 0.22834167, -0.85575339,
                                           0.00138482, 0.76566531, 0.34631421, -0.00215674, 0.43827275],
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(c_next[2], [0.63267805, 1.00570849, 0.35504474, 0.20690913, -1.64566718,
                                           0.11832942, 0.76449811, -0.0981561, -0.74348425, -0.26810932],
                               rtol=1e-7)
    np.testing.assert_allclose(yt[1], [0.79913913, 0.15986619, 0.22412122, 0.15606108, 0.97057211,
                                       0.31146381, 0.00943007, 0.12666353, 0.39380172, 0.07828381],
                               rtol=1e-6)
    # the numpy step agrees with the kernel
    a2, c2, _ = cell.step(xt.T, a_prev.T, c_prev.T)
    np.testing.assert_allclose(a2, A[0], rtol=1e-12)


def test_course_lstm_forward():
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    params, Wy, by = _course_lstm_params()
    cell = _cell("lstm", params)
    X = np.ascontiguousarray(x.transpose(2, 1, 0))  # (n_x, m, T) -> (T, m, n_x)
    A, run = cell.forward(X, (a0.T, np.zeros((10, 5))), np.ones((7, 10), np.uint8))
    a = A.transpose(2, 1, 0)  # the course's (n_a, m, T)
    c = run.C.transpose(2, 1, 0)
    y = np.stack([_softmax_rows(Wy @ a[:, :, t] + by) for t in range(7)], axis=2)
    assert a[4][3][6] == pytest.approx(0.17211776753291672, rel=1e-12)
    assert y[1][4][3] == pytest.approx(0.9508734618501101, rel=1e-12)
    assert c[1][2][1] == pytest.approx(-0.8555449167181981, rel=1e-12)


def test_lstm_step_backward_matches_kernel():
    rng = np.random.default_rng(5)
    layer = _layer({"type": "lstm", "units": 4, "return_sequences": True}, T=3)
    x = rng.standard_normal((2, 3, N_X))
    R = rng.standard_normal((2, 3, 4))
    layer.forward(x, True)
    dx = layer.backward(R)
    kernel_grads = {k: v.copy() for k, v in layer.grads.items()}
    cell = layer.cell
    cell.zero_grad()
    a, c = cell.zero_state(2)
    steps = []
    for t in range(3):
        a, c, s = cell.step(x[:, t], a, c)
        steps.append(s)
    da, dc = np.zeros((2, 4)), np.zeros((2, 4))
    dxs = []
    for t in reversed(range(3)):
        dxt, da, dc = cell.step_backward(R[:, t] + da, dc, steps[t])
        dxs.append(dxt)
    np.testing.assert_allclose(np.stack(dxs[::-1], 1), dx, rtol=1e-10)
    for k in kernel_grads:
        np.testing.assert_allclose(cell.grads[k], kernel_grads[k], rtol=1e-10, atol=1e-14)


def test_params_are_views_of_the_stacked_gates():
    layer = _layer({"type": "lstm", "units": 4})
    assert [k for k in layer.params] == ["Wf", "Wi", "Wc", "Wo", "bf", "bi", "bc", "bo"]
    assert layer.params["Wf"].shape == (4, 4 + N_X) and layer.params["bo"].shape == (4, 1)
    assert layer.parameter_count() == 4 * 4 * (4 + N_X + 1)
    layer.params["Wi"][...] = 0  # written in place, as the optimizer and init_from do
    assert np.all(layer.cell.W[4:8] == 0)
    gru = _layer({"type": "gru", "units": 4})
    assert [k for k in gru.params] == ["Wu", "Wr", "Wc", "bu", "br", "bc"]
    rnn = _layer({"type": "rnn", "units": 4})
    assert {k: v.shape for k, v in rnn.params.items()} == {"Waa": (4, 4), "Wax": (4, N_X), "ba": (4, 1)}


def test_sequence_layer_schemas_match_their_classes():
    import inspect

    from dlcli.nn import LAYERS, _load_layer_modules
    from dlcli.recipe import LAYER_CLASSES
    _load_layer_modules()
    for name in ("embedding", "one_hot", "rnn", "gru", "lstm", "bidirectional"):
        fields = set(LAYER_CLASSES[name].model_fields) - {"type"}
        params = set(inspect.signature(LAYERS[name].__init__).parameters) - {"self"}
        assert fields and fields <= params, name


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("m,T", [(1, 1), (1, 5), (9, 1), (9, 5)])
def test_reused_arrays_never_change_returned_outputs(kind, m, T):
    """The cells hand their run arrays out again (`_Spare`): outputs must be copies."""
    rng = np.random.default_rng(3)
    layer = _layer({"type": kind, "units": N_A, "return_sequences": True}, T=T)
    x1, x2 = rng.standard_normal((2, m, T, N_X))
    y1 = layer.forward(x1, False)
    kept = y1.copy()
    layer.forward(x2, False)
    y = layer.forward(x2, True)
    dx = layer.backward(np.ones_like(y))
    grads = {k: g.copy() for k, g in layer.grads.items()}
    layer.forward(x1, True)
    layer.forward(x2, True)  # a second training pass before backward: its run is the one used
    np.testing.assert_array_equal(y1, kept)
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), dx)
    for k in grads:
        np.testing.assert_array_equal(layer.grads[k], grads[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward_sums_shared_tokens_like_add_at(dtype):
    from dlcli.nn.embedding import Embedding
    rng = np.random.default_rng(4)
    layer = Embedding(dim=3, vocab=5)
    layer.build((6,), type("Ctx", (), {"rng": rng, "dtype": dtype, "init": "xavier"})())
    ids = rng.integers(-2, 5, size=(4, 6))
    ids[0, :3] = 2  # one token three times in a row
    dy = rng.standard_normal((4, 6, 3)).astype(dtype)
    layer.forward(ids, True)
    assert layer.backward(dy) is None
    want = np.zeros((3, 5), dtype)
    valid = ids >= 0
    np.add.at(want.T, ids[valid], dy[valid])
    np.testing.assert_array_equal(layer.grads["E"], want)


def test_pinned_workers_run_on_distinct_cores():
    import os

    from numba import get_num_threads

    from dlcli.kernels import threads
    cores = threads.pin_once()
    n = get_num_threads()
    if (os.environ.get("DLCLI_PIN_THREADS") == "0" or not hasattr(os, "sched_getaffinity")
            or not 1 < n <= len(os.sched_getaffinity(0))):
        assert cores is None
        return
    assert cores is not None and len(set(cores)) == n
    for _ in range(20):  # after the pin, every region's workers start on their own cores
        cpus = np.full(n, -1, dtype=np.int64)
        threads.worker_cpus(cpus)
        assert sorted(cpus) == sorted(cores)
