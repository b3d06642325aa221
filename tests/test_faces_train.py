"""An embedding run end to end: recipe keys, identity batches in training, tau and the evaluation
in summary.json, the tables; `dlcli show` and `dlcli gradcheck` with l2_normalize."""

import json

import numpy as np
import pytest
import yaml
from conftest import course_data
from typer.testing import CliRunner

from dlcli.cli import app


def glyph_recipe(tmp_path, loss="triplet", **extra):
    train = course_data("glyphs", "glyphs_train.npz")
    unseen = course_data("glyphs", "glyphs_unseen.npz")
    recipe = {
        "name": "glyphs_small", "seed": 3,
        "data": {"train": {"path": str(train), "keep_labels": list(range(40))},
                 "dev": 0.2,
                 "test": {"path": str(unseen), "keep_labels": list(range(1000, 1030))},
                 "scale": 255},
        "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 64, "activation": "relu"},
                             {"type": "dense", "units": 16}, {"type": "l2_normalize"}]},
        "loss": loss,
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "training": {"epochs": 3, "identities_per_batch": 8, "examples_per_identity": 4},
        "evaluation": {"one_shot_ways": 5, "one_shot_episodes": 200}, **extra}
    path = tmp_path / "glyphs_small.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize("loss", ["triplet", {"name": "triplet", "mining": "hard", "margin": 0.3},
                                  "siamese_binary"])
def test_an_embedding_run_saves_tau_verification_recognition_and_one_shot(tmp_path, loss):
    result = CliRunner().invoke(app, ["train", str(glyph_recipe(tmp_path, loss)), "--runs-dir",
                                      str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "Verification at tau" in result.stdout and "◀ tau" in result.stdout
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    tau = summary["tau"]
    assert isinstance(tau, float) and summary["embedding"]["tau_split"] == "dev"
    errors = summary["errors"]
    assert errors["train"] < 0.25 and errors["dev"] < 0.35 and errors["test"] < 0.35  # chance: 0.5
    dev = summary["embedding"]["splits"]["dev"]["verification"]
    assert dev["tau"] == tau and dev["error"] == pytest.approx(errors["dev"])
    assert dev["error"] == pytest.approx((dev["false_reject"] + dev["false_accept"]) / 2)
    assert set(summary["recognition_accuracy"]) == {"train", "dev", "test"}
    assert 0 <= summary["recognition_accuracy"]["dev"] <= 1
    shot = summary["one_shot"]["test"]
    assert (shot["ways"], shot["episodes"], shot["identities"]) == (5, 200, 30)
    assert shot["accuracy"] > 0.4  # chance is 0.2
    with np.load(run / "predictions" / "test.npz") as f:
        assert f["probabilities"].shape[1] == 16
        # unseen identities: "not recognized" (-1) or a wrong training identity, never their own
        assert not np.isin(f["y_pred"], f["y_true"]).any()
    with np.load(run / "params.npz") as f:
        if loss == "siamese_binary":
            assert f["loss.w"].shape == (16,) and f["loss.b"].shape == ()
        else:
            assert not any(k.startswith("loss.") for k in f.files)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["training"]["identities_per_batch"] == 8
    if loss == "triplet":
        assert recipe["loss"] == {"name": "triplet", "margin": 0.2, "mining": "semi_hard"}


def test_training_is_reproducible_from_the_seed(tmp_path):
    path = glyph_recipe(tmp_path, {"name": "triplet", "mining": "random"},)
    runs = []
    for k in range(2):
        CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / f"runs{k}"), "--quiet",
                                 "--set", "training.epochs=1"])
        run = next((tmp_path / f"runs{k}").iterdir())
        with np.load(run / "params.npz") as f:
            runs.append({k: f[k] for k in f.files})
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_keep_labels_selects_identities(tmp_path):
    from dlcli import api
    dataset = api.load_data(api.as_recipe(glyph_recipe(tmp_path)))
    assert set(np.unique(dataset.splits["train"].y)) <= set(range(40))
    assert set(np.unique(dataset.splits["test"].y)) == set(range(1000, 1030))
    bad = CliRunner().invoke(app, ["train", str(glyph_recipe(tmp_path)), "--set",
                                   "data.test.keep_labels=[5000]"])
    assert bad.exit_code == 2 and "keep_labels" in bad.output


@pytest.mark.parametrize("loss", [{"name": "triplet", "margin": 1.0, "mining": "hard"},
                                  {"name": "triplet", "margin": 1.0, "mining": "semi_hard"},
                                  "siamese_binary"])
def test_show_and_gradcheck_with_l2_normalize(tmp_path, loss):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((16, 6)), y=np.repeat(np.arange(4), 4))
    recipe = {"dtype": "float64", "data": {"train": {"path": str(tmp_path / "d.npz")}},
              "model": {"layers": [{"type": "dense", "units": 5, "activation": "tanh"},
                                   {"type": "dense", "units": 3}, {"type": "l2_normalize"}]},
              "loss": loss, "training": {"shuffle": False}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    shown = CliRunner().invoke(app, ["show", str(path)])
    assert shown.exit_code == 0 and "l2_normalize" in shown.stdout and "(m, 3)" in shown.stdout
    checked = CliRunner().invoke(app, ["gradcheck", str(path), "--examples", "16", "--json"])
    assert checked.exit_code == 0, checked.output
    doc = json.loads(checked.stdout)
    assert doc["passed"] and doc["overall"] < 1e-7
    names = {t["name"] for t in doc["tensors"]}
    assert ("loss.w" in names) == (loss == "siamese_binary")


def test_the_glyphs_builtin_draws_identities_that_look_alike():
    from dlcli.data.builtin import generate
    x, y, names = generate({"builtin": "glyphs", "classes": 20, "n": 200, "size": 28},
                           np.random.default_rng(0), "data.train")
    assert x.shape == (200, 28, 28, 1) and x.dtype == np.uint8 and names is None
    assert sorted(np.unique(y, return_counts=True)[1]) == [10] * 20 and y.min() == 0
    x2, y2, _ = generate({"builtin": "glyphs", "classes": 20, "n": 200}, np.random.default_rng(0), "data.train")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    _, y_test, _ = generate({"builtin": "glyphs", "classes": 5, "n": 20}, np.random.default_rng(1), "data.test")
    assert set(y_test) == set(range(100_000, 100_005))
    v = x.reshape(200, -1).astype(float)
    v = (v - v.mean(1, keepdims=True)) / v.std(1, keepdims=True)
    corr = v @ v.T / v.shape[1]
    same = (y[:, None] == y[None, :]) & ~np.eye(200, dtype=bool)
    assert corr[same].mean() > corr[~same].mean() + 0.1
