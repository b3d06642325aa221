"""Neural style transfer (course 4.4.2): the costs and their gradients against PyTorch autograd,
the gradient to the image through a frozen conv net, the course's total_cost cases, --noise 0,
and `dlcli style` end to end on a small planted run."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlcli import style
from dlcli.cli import app

RTOL = 1e-9


def randn(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def test_total_cost_reproduces_the_course():
    assert style.total_cost(0.2, 0.8) == pytest.approx(34)
    assert style.total_cost(0.3, 0.5, 3, 8) == pytest.approx(4.9)


def test_gram_matrix_is_A_A_transpose():
    A = randn(3, 8)
    G = style.gram_matrix(A)
    assert G.shape == (3, 3) and np.allclose(G, G.T)
    assert G[1, 2] == pytest.approx(np.dot(A[1], A[2]))


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(1, 4, 5, 3), (6, 2, 7)])
def test_content_and_style_costs_match_torch(shape):
    torch = pytest.importorskip("torch")
    a_C, a_S, a_G = randn(*shape, seed=1), randn(*shape, seed=2), randn(*shape, seed=3)
    n_H, n_W, n_C = shape[-3:]

    g = torch.tensor(a_G, requires_grad=True)
    jc = ((torch.tensor(a_C) - g) ** 2).sum() / (4 * n_H * n_W * n_C)
    jc.backward()
    Jc, dc = style.content_cost(a_C, a_G)
    np.testing.assert_allclose(Jc, float(jc.detach()), rtol=RTOL)
    np.testing.assert_allclose(dc, g.grad.numpy(), rtol=RTOL)

    def unrolled(a):  # the course: (n_C, n_H n_W)
        return a.reshape(-1, n_C).T

    g = torch.tensor(a_G, requires_grad=True)
    GS, GG = unrolled(torch.tensor(a_S)) @ unrolled(torch.tensor(a_S)).T, unrolled(g) @ unrolled(g).T
    np.testing.assert_allclose(style.gram_matrix(style._unrolled(a_S)), GS.numpy(), rtol=RTOL)
    js = ((GS - GG) ** 2).sum() / (4 * n_C ** 2 * (n_H * n_W) ** 2)
    js.backward()
    Js, ds = style.layer_style_cost(a_S, a_G)
    np.testing.assert_allclose(Js, float(js.detach()), rtol=RTOL)
    np.testing.assert_allclose(ds, g.grad.numpy(), rtol=RTOL, atol=1e-15)


@pytest.mark.torch
def test_total_cost_and_its_gradient_to_the_image_match_torch_through_a_frozen_conv_net():
    """J of a two-conv net (content after conv 2, style after both, weights 0.3 / 0.7) and dJ/dG
    by dlcli's layers' backward, against the same net in torch."""
    torch = pytest.importorskip("torch")
    from dlcli.recipe import recipe_from_dict
    from dlcli.nn.model import build_model
    recipe = recipe_from_dict({"dtype": "float64", "data": {"train": {"builtin": "planar"}},
                               "model": {"layers": [
                                   {"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "activation": "relu"},
                                   {"type": "maxpool", "size": 2},
                                   {"type": "conv2d", "filters": 5, "size": 3, "padding": "same", "activation": "tanh"},
                                   {"type": "flatten"}, {"type": "dense", "units": 1}]}})
    params = build_model(recipe.to_dict()["model"], "mse", 0, (10, 12, 3), "float64",
                         rng=np.random.default_rng(4)).state_dict()
    C, S, G = (np.random.default_rng(s).random((1, 10, 12, 3)) for s in (5, 6, 7))
    model = style.feature_model(recipe, params, (10, 12, 3), 2)
    a_C = style.run_layers(model, C, {2})[2]
    a_S = style.run_layers(model, S, {0, 2})
    acts = style.run_layers(model, G, {0, 2})
    Jc, dc = style.content_cost(a_C, acts[2])
    Js, ds = style.style_cost([a_S[0], a_S[2]], [acts[0], acts[2]], [0.3, 0.7])
    J = style.total_cost(Jc, Js)
    dG = style.back_to_image(model, {0: 40 * ds[0], 2: 40 * ds[1] + 10 * dc})

    def net(x):
        W0, W2 = (torch.tensor(params[k]).permute(3, 2, 0, 1) for k in ("0.W", "2.W"))
        a0 = torch.relu(torch.nn.functional.conv2d(x, W0, torch.tensor(params["0.b"]), padding=1))
        a2 = torch.tanh(torch.nn.functional.conv2d(torch.nn.functional.max_pool2d(a0, 2), W2,
                                                   torch.tensor(params["2.b"]), padding=1))
        return a0, a2

    def nchw(a):
        return torch.tensor(a).permute(0, 3, 1, 2)

    def gram(a):
        A = a[0].reshape(a.shape[1], -1)
        return A @ A.T

    def jstyle(s, g):
        n_C, n_HW = s.shape[1], s.shape[2] * s.shape[3]
        return ((gram(s) - gram(g)) ** 2).sum() / (4 * n_C ** 2 * n_HW ** 2)

    g = nchw(G).clone().requires_grad_(True)
    c0, c2 = net(nchw(C))
    s0, s2 = net(nchw(S))
    g0, g2 = net(g)
    jc = ((c2 - g2) ** 2).sum() / (4 * c2.numel())
    jt = 10 * jc + 40 * (0.3 * jstyle(s0, g0) + 0.7 * jstyle(s2, g2))
    jt.backward()
    np.testing.assert_allclose(J, float(jt.detach()), rtol=RTOL)
    np.testing.assert_allclose(dG, g.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-8, atol=1e-14)
    assert all(not layer.trainable for layer in model.layers)


def test_choose_layers_defaults_to_the_last_conv_and_every_conv_equally():
    specs = [{"type": "conv2d"}, {"type": "maxpool"}, {"type": "conv2d"}, {"type": "flatten"},
             {"type": "dense"}]
    assert style.choose_layers(specs) == (2, {0: 0.5, 2: 0.5})
    assert style.parse_style_layers("0:0.2,2:0.8") == {0: 0.2, 2: 0.8}
    assert style.parse_style_layers("0,2") == {0: 0.5, 2: 0.5}


# -- the job and the command ---------------------------------------------------------------------
@pytest.fixture
def conv_run(tmp_path):
    """A run directory of a small RGB conv net (initial weights: random filters give textures)."""
    from dlcli import api
    from dlcli.recipe import recipe_from_dict
    from dlcli.runs import atomic_write_json, atomic_write_npz, atomic_write_text
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "imgs.npz", x=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
             y=np.arange(8) % 2)
    recipe = recipe_from_dict({
        "name": "tiny_conv", "data": {"train": {"path": str(tmp_path / "imgs.npz")}, "scale": 255},
        "model": {"layers": [
            {"type": "conv2d", "filters": 8, "size": 3, "padding": "same", "activation": "relu"},
            {"type": "maxpool", "size": 2},
            {"type": "conv2d", "filters": 8, "size": 3, "padding": "same", "activation": "relu"},
            {"type": "global_avgpool"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}})
    model, _ = api.prepare(recipe)
    run = tmp_path / "run"
    run.mkdir()
    atomic_write_text(run / "recipe.yaml", recipe.to_yaml())
    atomic_write_npz(run / "params.npz", model.state_dict())
    atomic_write_json(run / "summary.json", {"name": "tiny_conv", "status": "completed"})
    content = np.zeros((20, 24, 3), np.uint8)
    content[5:15, 6:18] = (200, 40, 40)
    stripes = np.zeros((30, 30, 3), np.uint8)
    stripes[::4] = (20, 200, 240)
    Image.fromarray(content).save(tmp_path / "content.png")
    Image.fromarray(stripes).save(tmp_path / "style.png")
    return run, tmp_path / "content.png", tmp_path / "style.png"


def test_noise_zero_starts_from_the_content_with_content_cost_exactly_zero(conv_run):
    run, content, style_image = conv_run
    result = style.style_run(run, content, style_image, out=run / "out", iterations=1, noise=0.0)
    assert result.iterations[0]["content"] == 0.0
    assert result.iterations[0]["style"] > 0 and result.iterations[1]["content"] > 0


def test_dlcli_style_writes_pngs_and_lowers_the_cost(conv_run, tmp_path):
    run, content, style_image = conv_run
    out = tmp_path / "styled"
    result = CliRunner().invoke(app, ["style", str(run), "--content", str(content), "--style",
                                      str(style_image), "--size", "16", "12", "--iterations", "30",
                                      "--learning-rate", "0.05", "--save-every", "10",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    its = doc["iterations"]
    assert [r["iteration"] for r in its] == list(range(31))
    assert set(its[0]) == {"iteration", "cost", "content", "style"}
    assert its[-1]["cost"] < its[0]["cost"] / 2
    assert doc["image"] == str(out / "generated.png")
    with Image.open(doc["image"]) as im:
        assert im.size == (16, 12) and im.mode == "RGB"
    assert sorted(p.name for p in out.iterdir()) == ["generated.png", "generated_00010.png",
                                                      "generated_00020.png"]


def test_dlcli_style_bad_input_exits_2(conv_run, tmp_path):
    run, content, style_image = conv_run
    runner = CliRunner()
    missing = runner.invoke(app, ["style", str(run), "--content", str(tmp_path / "none.png"),
                                  "--style", str(style_image), "--iterations", "1"])
    assert missing.exit_code == 2
    dense = runner.invoke(app, ["style", str(run), "--content", str(content), "--style",
                                str(style_image), "--content-layer", "4", "--iterations", "1"])
    assert dense.exit_code == 2
