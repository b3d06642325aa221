"""Sliding windows: the convolutional scan equals the crop-by-crop scan (SPEC)."""

import numpy as np
import pytest

from dlcli.detect.windows import convolutional_net, convolutional_windows, naive_windows, plan
from dlcli.errors import BadInput
from dlcli.nn.model import build_model

LAYERS = [{"type": "conv2d", "filters": 4, "size": 3, "activation": "relu"},
          {"type": "maxpool", "size": 2},
          {"type": "conv2d", "filters": 6, "size": 3, "activation": "relu"},
          {"type": "maxpool", "size": 2},
          {"type": "flatten"},
          {"type": "dense", "units": 10, "activation": "relu"},
          {"type": "dense", "units": 3, "activation": "softmax"}]


def model_for(layers=LAYERS, shape=(14, 14, 3)):
    model = build_model({"layers": layers}, "auto", 0.0, shape, "float64", rng=np.random.default_rng(0))
    for _, layer in model.named_layers():  # biases too, so a bias bug shows
        for p in layer.params.values():
            p += 0.1 * np.random.default_rng(1).standard_normal(p.shape)
    return model


@pytest.mark.parametrize("size", [(14, 14), (26, 30), (23, 17)])
def test_convolutional_windows_equal_the_crop_by_crop_scan(size):
    model = model_for()
    image = np.random.default_rng(2).random(size + (3,))
    conv, stride = convolutional_windows(model, LAYERS, image)
    naive, stride2 = naive_windows(model, image, conv.shape[:2])
    assert stride == stride2 == 4 and plan(model)[3] == (2, 2, 6)
    assert conv.shape == ((size[0] - 14) // 4 + 1, (size[1] - 14) // 4 + 1, 3)
    np.testing.assert_allclose(conv, naive, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(conv.sum(-1), 1.0)  # softmax per window


def test_dense_turned_into_conv_keeps_the_weights():
    model = model_for()
    net = convolutional_net(model, LAYERS, (14, 14, 3))
    first = net.layers[4]
    assert first.params["W"].shape == (2, 2, 6, 10) and net.layers[5].params["W"].shape == (1, 1, 10, 3)
    x = np.random.default_rng(3).random((5, 14, 14, 3))
    np.testing.assert_allclose(model.loss.output(net.forward(x, False))[:, 0, 0], model.predict_proba(x),
                               rtol=1e-12)


def test_same_padding_is_refused():
    layers = [dict(LAYERS[0], padding="same")] + LAYERS[1:]
    with pytest.raises(BadInput, match="valid padding"):
        plan(model_for(layers))


def test_predict_windows_gives_the_heat_map(tmp_path):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from dlcli.cli import app
    recipe = tmp_path / "win.yaml"
    recipe.write_text("""name: win
data:
  train: {builtin: shapes, n: 120, size: 14}
  scale: 255
model:
  layers:
""" + "".join(f"    - {json.dumps(s)}\n" for s in LAYERS) + "training: {epochs: 1, batch_size: 32}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(recipe), "--runs-dir", str(tmp_path / "runs"), "--quiet"]).exit_code == 0
    run = next((tmp_path / "runs").iterdir())
    image = (np.random.default_rng(4).random((30, 22, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "big.png"), "--windows", "--json",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    w = json.loads(result.stdout)["predictions"][0]["windows"]
    assert w["window"] == [14, 14] and w["stride"] == 4 and w["grid"] == [5, 3]
    from dlcli import api
    model, _ = api.load_model(run)
    naive, _ = naive_windows(model, image.astype(np.float64) / 255, (5, 3))
    np.testing.assert_allclose(w["probability"], naive.max(-1), atol=2e-6)
    assert w["class"] == naive.argmax(-1).tolist()
    assert (tmp_path / "out" / "big_windows.png").exists()
