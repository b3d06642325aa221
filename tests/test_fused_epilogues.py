"""Passes fused for resnet_small (kernels/batchnorm.py's relu, kernels/residual.py): a batch
norm with the relu after it in its own passes, and a residual block's sum + relu in one, against
numpy and against the same layers unfused, in float64, forward and backward, trained and frozen."""

import numpy as np
import pytest

from dlcli.nn.model import build_model


def _relu_bn_reference(x2, gamma, beta, epsilon, dy2):
    """Batch norm then relu and their backward, written out in float64."""
    mean, var = x2.mean(axis=0), x2.var(axis=0)
    z_norm = (x2 - mean) / np.sqrt(var + epsilon)
    y = gamma * z_norm + beta
    a = np.maximum(y, 0)
    dy_masked = np.where(y > 0, dy2, 0)
    dbeta, dgamma = dy_masked.sum(axis=0), (dy_masked * z_norm).sum(axis=0)
    n = x2.shape[0]
    dx = gamma / np.sqrt(var + epsilon) / n * (n * dy_masked - dbeta - z_norm * dgamma)
    return a, dx, dgamma, dbeta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,C", [(1, 3), (7, 5), (130, 32), (33, 70), (521, 24), (1000, 16)])
def test_batchnorm_kernels_with_relu_match_numpy(rows, C, dtype):
    from dlcli.kernels.batchnorm import batchnorm_backward, batchnorm_forward
    rng = np.random.default_rng(rows * C)
    x2, dy2 = (rng.standard_normal((rows, C)).astype(dtype) for _ in range(2))
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    a, dx, dgamma, dbeta = _relu_bn_reference(*(v.astype(np.float64) for v in (x2, gamma, beta)),
                                              1e-5, dy2.astype(np.float64))
    out, dx_k = (np.empty_like(x2) for _ in range(2))
    stats = [np.empty(C, dtype=dtype) for _ in range(3)]
    batchnorm_forward(x2, gamma, beta, 1e-5, out, *stats, True)
    dgamma_k, dbeta_k = np.empty(C, dtype=dtype), np.empty(C, dtype=dtype)
    batchnorm_backward(dy2, x2, stats[0], gamma, beta, stats[2], dx_k, dgamma_k, dbeta_k, True)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    assert (out >= 0).all()
    for got, want in ((out, a), (dx_k, dx), (dgamma_k, dgamma), (dbeta_k, dbeta)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,C", [(1, 3), (7, 5), (130, 32), (521, 24)])
def test_batchnorm_with_the_shortcut_added_matches_numpy(rows, C, dtype):
    """A residual block's last batch norm adds the shortcut and applies the block's relu in
    its normalising pass (kernels/batchnorm.py's addend); its backward is the batch norm's."""
    from dlcli.kernels.batchnorm import batchnorm_normalize, batchnorm_stats
    rng = np.random.default_rng(rows + C)
    x2, shortcut = (rng.standard_normal((rows, C)).astype(dtype) for _ in range(2))
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    stats = [np.empty(C, dtype=dtype) for _ in range(3)]
    batchnorm_stats(x2, 1e-5, *stats)
    out = np.empty_like(x2)
    batchnorm_normalize(x2, gamma, beta, stats[0], stats[2], out, True, shortcut)
    x64 = x2.astype(np.float64)
    y = gamma * (x64 - x64.mean(axis=0)) / np.sqrt(x64.var(axis=0) + 1e-5) + beta
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, np.maximum(y + shortcut, 0), rtol=tol, atol=tol)


def test_residual_kernels_match_numpy():
    from dlcli.kernels.residual import add_relu, relu_backward
    rng = np.random.default_rng(3)
    z, s, da = (rng.standard_normal(1001) for _ in range(3))
    a = np.empty_like(z)
    add_relu(z, s, a)
    np.testing.assert_array_equal(a, np.maximum(z + s, 0))
    dz = np.empty_like(z)
    relu_backward(da, a, dz)
    np.testing.assert_array_equal(dz, np.where(z + s > 0, da, 0))


LAYERS = [{"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "bias": False},
          {"type": "batchnorm"}, {"type": "activation", "activation": "relu"},
          {"type": "residual", "layers": [
              {"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "bias": False},
              {"type": "batchnorm"}, {"type": "activation", "activation": "relu"},
              {"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "bias": False},
              {"type": "batchnorm"}]},
          {"type": "global_avgpool"}, {"type": "dense", "units": 3, "activation": "softmax"}]


def _model(fused, freeze=None):
    cfg = {"layers": LAYERS, "init": "he", **({"freeze": freeze} if freeze else {})}
    model = build_model(cfg, "auto", 0.0, (6, 5, 3), "float64")
    if not fused:  # undo what the build fused: every batch norm and relu on its own
        from dlcli.nn.base import walk
        for _, layer in walk(model.net):
            if getattr(layer, "relu", None) is True:
                layer.relu = False
            if layer.kind == "activation":
                layer.fused = False
    return model


@pytest.mark.parametrize("freeze", [None, [1]])
def test_fused_batchnorm_relu_gives_the_unfused_cost_and_gradients(freeze):
    from dlcli.nn.base import walk
    fused, plain = _model(True, freeze), _model(False, freeze)
    assert fused.layers[1].relu and fused.layers[2].fused
    assert fused.layers[3].layers[1].relu and fused.layers[3].layers[2].fused
    assert not plain.layers[1].relu and not plain.layers[2].fused
    plain.load_state_dict(fused.state_dict())
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4, 6, 5, 3)), rng.integers(0, 3, 4)
    for _ in range(2):  # the kept buffers of a second step hold the same numbers
        costs = [model.cost(x, y) for model in (fused, plain)]
        assert costs[0] == pytest.approx(costs[1], rel=1e-12)
        for model in (fused, plain):
            model.backward()
        grads = [{p + k: layer.grads[k] for p, layer in walk(m.net) for k in layer.params}
                 for m in (fused, plain)]
        for name, grad in grads[0].items():
            np.testing.assert_allclose(grad, grads[1][name], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fused.forward(x), plain.forward(x), rtol=1e-12)  # inference


def test_fused_batchnorm_relu_gradient_by_finite_differences():
    from conftest import numerical_grad
    model = _model(True)
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((3, 6, 5, 3)), rng.integers(0, 3, 3)
    model.cost(x, y)
    model.backward()
    bn = model.layers[3].layers[1]
    for key in ("gamma", "beta"):
        analytic = bn.grads[key].copy()
        numeric = numerical_grad(lambda: model.cost(x, y), bn.params[key])
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_a_residual_blocks_batchnorm_adding_its_shortcut_gives_the_unfused_cost_and_gradients(
        monkeypatch):
    """nn/conv_blocks.py: the block's last batch norm adds the shortcut and activates in its
    own pass; against the block's separate sum + relu pass, two steps (the kept arrays
    reused), in float64."""
    from dlcli.nn.base import walk
    from dlcli.nn.layers import BatchNorm
    fused, plain = _model(True), _model(True)
    plain.load_state_dict(fused.state_dict())
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((4, 6, 5, 3)), rng.integers(0, 3, 4)
    calls = []
    adds_into = BatchNorm.adds_into
    monkeypatch.setattr(BatchNorm, "adds_into",
                        lambda self, *a: calls.append(self) or adds_into(self, *a))
    for _ in range(2):
        cost = fused.cost(x, y)
        fused.backward()
        with monkeypatch.context() as m:
            m.setattr(BatchNorm, "adds_into", lambda self, *a: False)
            plain_cost = plain.cost(x, y)
            plain.backward()
        assert cost == pytest.approx(plain_cost, rel=1e-12)
        grads = [{p + k: layer.grads[k] for p, layer in walk(m.net) for k in layer.params}
                 for m in (fused, plain)]
        for name, grad in grads[0].items():
            np.testing.assert_allclose(grad, grads[1][name], rtol=1e-10, atol=1e-13)
    assert calls == [fused.layers[3].layers[4]] * 2
