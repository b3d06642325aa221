"""attention_decoder: forward and backward against the same formulas in PyTorch autograd
(float64, 1e-9 relative), and against finite differences."""

import numpy as np
import pytest

from dlcli.nn.attention import AttentionDecoder
from dlcli.nn.base import BuildContext

from conftest import numerical_grad


def make_layer(n_a=6, n_s=5, steps=4, A=3, seed=0, dtype=np.float64):
    layer = AttentionDecoder(units=n_s, steps=steps, attention_units=A)
    layer.build((7, n_a), BuildContext(dtype=np.dtype(dtype), rng=np.random.default_rng(seed),
                                       init="xavier"))
    rng = np.random.default_rng(seed + 1)
    # biases away from 0 so that every path (relu on both sides) is exercised
    for store in (layer.params, layer.lstm.params):
        for key, value in store.items():
            if key.startswith("b"):
                value[...] = rng.normal(0, 0.5, value.shape)
    layer.params["b2"][...] = 0.05  # scores on both sides of relu's kink
    return layer


def torch_reference(layer, a, dy):
    """The SPEC's formulas with torch ops: outputs and the gradients of sum(out * dy)."""
    import torch
    t = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    lt = {k: torch.tensor(v, requires_grad=True) for k, v in layer.lstm.params.items()}
    x = torch.tensor(a, requires_grad=True)
    m, Tx, n_a = a.shape
    n_s = layer.units
    s = torch.zeros(m, n_s, dtype=torch.float64)
    c = torch.zeros(m, n_s, dtype=torch.float64)
    outs, alphas = [], []
    for _ in range(layer.steps):
        concat = torch.cat([s[:, None, :].expand(m, Tx, n_s), x], dim=2)       # [s<t-1>, a<t'>]
        h = torch.tanh(concat @ t["W1"].T + t["b1"][:, 0])
        e = torch.relu(h @ t["W2"].T + t["b2"][0])[..., 0]                     # (m, Tx)
        alpha = torch.softmax(e, dim=1)
        context = (alpha[..., None] * x).sum(dim=1)
        z = torch.cat([s, context], dim=1)
        gf = torch.sigmoid(z @ lt["Wf"].T + lt["bf"][:, 0])
        gi = torch.sigmoid(z @ lt["Wi"].T + lt["bi"][:, 0])
        cc = torch.tanh(z @ lt["Wc"].T + lt["bc"][:, 0])
        go = torch.sigmoid(z @ lt["Wo"].T + lt["bo"][:, 0])
        c = gf * c + gi * cc
        s = go * torch.tanh(c)
        outs.append(s)
        alphas.append(alpha)
    out = torch.stack(outs, dim=1)
    (out * torch.tensor(dy)).sum().backward()
    grads = {k: v.grad.numpy() for k, v in t.items()}
    grads.update({"lstm." + k: v.grad.numpy() for k, v in lt.items()})
    return out.detach().numpy(), torch.stack(alphas, 1).detach().numpy(), x.grad.numpy(), grads


def layer_grads(layer):
    g = dict(layer.grads)
    g.update({"lstm." + k: v for k, v in layer.lstm.grads.items()})
    return g


def rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.torch
@pytest.mark.parametrize("m, Tx, steps", [(1, 1, 1), (3, 7, 4), (2, 5, 9)])
def test_forward_backward_equal_torch(m, Tx, steps):
    pytest.importorskip("torch")
    layer = make_layer(steps=steps, seed=m + Tx)
    rng = np.random.default_rng(10 + m)
    a = rng.normal(size=(m, Tx, 6))
    dy = rng.normal(size=(m, steps, 5))
    out = layer.forward(a, training=True)
    if Tx > 1:  # both sides of the relu are exercised
        assert 0 < np.mean(layer.cache.E > 0) < 1
    da = layer.backward(dy)
    t_out, t_alpha, t_da, t_grads = torch_reference(layer, a, dy)
    assert out.shape == (m, steps, 5)
    assert rel(out, t_out) < 1e-12
    assert rel(layer.attention, t_alpha) < 1e-12
    assert np.allclose(layer.attention.sum(axis=2), 1)
    assert rel(da, t_da) < 1e-9
    ours = layer_grads(layer)
    assert set(ours) == set(t_grads)
    for key, expected in t_grads.items():
        assert ours[key].shape == expected.shape, key
        assert rel(ours[key], expected) < 1e-9, key


def test_parameter_names_and_shapes():
    layer = make_layer(n_a=64, n_s=64, steps=10, A=10)
    shapes = {k: v.shape for k, v in layer.params.items()}
    assert shapes == {"W1": (10, 128), "b1": (10, 1), "W2": (1, 10), "b2": (1, 1)}
    lstm = {k: v.shape for k, v in layer.lstm.params.items()}
    assert lstm == {**{f"W{g}": (64, 128) for g in "fico"}, **{f"b{g}": (64, 1) for g in "fico"}}
    # the course's decoder: attention 1290 + 11, post-attention LSTM 33,024
    assert layer.parameter_count() == 1290 + 11 + 33024


def test_backward_equals_finite_differences():
    layer = make_layer(n_a=3, n_s=2, steps=3, A=2, seed=4)
    rng = np.random.default_rng(5)
    a = rng.normal(size=(2, 4, 3))
    dy = rng.normal(size=(2, 3, 2))

    def f():
        return float(np.sum(layer.forward(a, training=False) * dy))
    layer.forward(a, training=True)
    assert 0 < np.mean(layer.cache.E > 0) < 1
    da = layer.backward(dy)
    assert rel(da, numerical_grad(f, a)) < 1e-7
    grads = layer_grads(layer)
    params = {**layer.params, **{"lstm." + k: v for k, v in layer.lstm.params.items()}}
    for key, value in params.items():
        assert rel(grads[key], numerical_grad(f, value)) < 1e-6, key


def test_float32_matches_float64():
    l64 = make_layer(seed=7)
    l32 = make_layer(seed=7, dtype=np.float32)
    for src, dst in ((l64.params, l32.params), (l64.lstm.params, l32.lstm.params)):
        for k in src:
            dst[k][...] = src[k]
    a = np.random.default_rng(8).normal(size=(3, 5, 6))
    assert np.allclose(l32.forward(a.astype(np.float32), False), l64.forward(a, False), atol=1e-5)


def numpy_forward(layer, a):
    """SPEC's formulas step by step in numpy (the course's RepeatVector + concatenate)."""
    p, lp = layer.params, layer.lstm.params
    m, Tx, _ = a.shape
    n_s = layer.units
    s, c = np.zeros((m, n_s)), np.zeros((m, n_s))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    outs, alphas = [], []
    for _ in range(layer.steps):
        concat = np.concatenate([np.repeat(s[:, None, :], Tx, axis=1), a], axis=2)
        e = np.maximum(np.tanh(concat @ p["W1"].T + p["b1"][:, 0]) @ p["W2"].T + p["b2"][0], 0)[..., 0]
        alpha = np.exp(e - e.max(axis=1, keepdims=True))
        alpha /= alpha.sum(axis=1, keepdims=True)
        z = np.concatenate([s, (alpha[..., None] * a).sum(axis=1)], axis=1)
        gate = {g: z @ lp["W" + g].T + lp["b" + g][:, 0] for g in "fico"}
        c = sig(gate["f"]) * c + sig(gate["i"]) * np.tanh(gate["c"])
        s = sig(gate["o"]) * np.tanh(c)
        outs.append(s)
        alphas.append(alpha)
    return np.stack(outs, 1), np.stack(alphas, 1)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_kernel_forward_equals_numpy(dtype, tol):
    layer = make_layer(n_a=8, n_s=6, steps=5, A=4, seed=11, dtype=dtype)
    a = np.random.default_rng(12).normal(size=(4, 9, 8))
    out = layer.forward(a.astype(dtype), training=False)
    params64 = make_layer(n_a=8, n_s=6, steps=5, A=4, seed=11)
    expected, alpha = numpy_forward(params64, a)
    assert out.dtype == dtype
    assert rel(out, expected) < tol and rel(layer.attention, alpha) < tol
