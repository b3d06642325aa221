"""dlcli train end to end: the run directory, reproducibility, divergence, early stopping,
Ctrl-C, ensembles and the CLI's answers to bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlcli import api
from dlcli.cli import app
from dlcli.runs import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

SMALL = {
    "name": "small",
    "seed": 4,
    "data": {"train": {"builtin": "moons", "n": 200}, "dev": 0.2, "test": 0.2, "train_dev": 0.1},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                         {"type": "dense", "units": 1, "activation": "sigmoid"}]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 5, "batch_size": 32},
    "evaluation": {"human_level_error": 0.02},
}


def write_recipe(tmp_path, recipe=SMALL, name="recipe.yaml", **changes):
    recipe = json.loads(json.dumps(recipe))
    for key, value in changes.items():
        node = recipe
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def train_cli(tmp_path, recipe_path, *args):
    return runner.invoke(app, ["train", str(recipe_path), "--runs-dir", str(tmp_path / "runs"),
                               "--quiet", *args])


def only_run(tmp_path) -> Path:
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run


def test_run_directory_follows_the_spec(tmp_path):
    result = train_cli(tmp_path, write_recipe(tmp_path))
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    assert run.name.endswith("-small") and run.name[:8].isdigit()
    assert {p.name for p in run.iterdir()} >= {"recipe.yaml", "metrics.jsonl", "params.npz",
                                               "summary.json", "predictions"}
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["optimizer"]["beta2"] == 0.999 and recipe["training"]["shuffle"] is True

    lines = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    # 200 examples: 40 test, 40 dev, 20 train-dev carved -> 100 training examples, batches of 32
    assert [r["iteration"] for r in lines] == [4, 8, 12, 16, 20]
    assert set(lines[0]) >= {"epoch", "iteration", "cost", "learning_rate", "train_error",
                             "dev_error", "seconds"}

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 5
    assert set(summary["errors"]) == {"train", "train_dev", "dev", "test"}
    e = summary["errors"]
    d = summary["diagnosis"]
    assert d["avoidable_bias"] == pytest.approx(e["train"] - 0.02)
    assert d["variance"] == pytest.approx(e["train_dev"] - e["train"])
    assert d["data_mismatch"] == pytest.approx(e["dev"] - e["train_dev"])
    assert d["dev_overfitting"] == pytest.approx(e["test"] - e["dev"])
    assert summary["parameters"] == 2 * 8 + 8 + 8 + 1
    assert set(summary["metrics"]["dev"]) >= {"precision", "recall", "f1", "accuracy"}

    params = np.load(run / "params.npz")
    assert params["0.W"].shape == (8, 2) and params["0.b"].shape == (8, 1)
    assert params["1.W"].shape == (1, 8)
    pred = np.load(run / "predictions" / "dev.npz")
    assert set(pred.files) == {"y_true", "y_pred", "probabilities", "index"}
    assert np.mean(pred["y_true"] != pred["y_pred"]) == pytest.approx(e["dev"])


def test_same_seed_gives_identical_params(tmp_path):
    recipe = write_recipe(tmp_path, **{"model__layers": SMALL["model"]["layers"][:1] + [
        {"type": "dropout", "keep_prob": 0.8}] + SMALL["model"]["layers"][1:]})
    for _ in range(2):
        assert train_cli(tmp_path, recipe).exit_code == 0
    a, b = sorted(p for p in (tmp_path / "runs").iterdir())
    pa, pb = np.load(a / "params.npz"), np.load(b / "params.npz")
    assert pa.files == pb.files
    for k in pa.files:
        np.testing.assert_array_equal(pa[k], pb[k])
    other = train_cli(tmp_path, recipe, "--set", "seed=5")
    assert other.exit_code == 0
    newest = max((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert not np.array_equal(np.load(newest / "params.npz")["0.W"], pa["0.W"])


def test_divergence_stops_with_status_diverged_and_exit_1(tmp_path):
    recipe = write_recipe(tmp_path, optimizer={"name": "gd", "learning_rate": 1.0e12},
                          **{"training__epochs": 50})
    result = train_cli(tmp_path, recipe)
    assert result.exit_code == 1
    assert "diverged" in result.output and "smaller learning rate" in result.output
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs"] < 50
    params = np.load(only_run(tmp_path) / "params.npz")
    assert all(np.isfinite(params[k]).all() for k in params.files)


def test_early_stopping_restores_the_best_epoch(tmp_path):
    recipe = write_recipe(tmp_path, **{
        "training__epochs": 200, "optimizer__learning_rate": 0.05,
        "training__early_stopping": {"metric": "dev_error", "patience": 3, "restore_best": True}})
    result = api.train(recipe, runs_dir=tmp_path / "runs")
    lines = read_jsonl(result.run_dir / "metrics.jsonl")
    assert len(lines) < 200
    best = min(lines, key=lambda r: r["dev_error"])
    assert result.summary["best_epoch"] == best["epoch"]
    assert result.summary["errors"]["dev"] == pytest.approx(best["dev_error"])


def test_learning_rate_decay_is_recorded_per_epoch(tmp_path):
    recipe = write_recipe(tmp_path, **{"optimizer__decay": {"schedule": "inverse_time", "rate": 1.0}})
    result = api.train(recipe, runs_dir=tmp_path / "runs")
    lrs = [r["learning_rate"] for r in read_jsonl(result.run_dir / "metrics.jsonl")]
    assert lrs == pytest.approx([0.01 / (1 + e) for e in range(5)])


def test_full_batch_and_stochastic_iteration_counts(tmp_path):
    recipe = write_recipe(tmp_path, **{"training__batch_size": "full", "training__epochs": 2})
    r = api.train(recipe, runs_dir=tmp_path / "runs")
    assert [x["iteration"] for x in read_jsonl(r.run_dir / "metrics.jsonl")] == [1, 2]
    recipe = write_recipe(tmp_path, **{"training__batch_size": 1, "training__epochs": 1})
    r = api.train(recipe, runs_dir=tmp_path / "runs")
    assert read_jsonl(r.run_dir / "metrics.jsonl")[0]["iteration"] == 100


def test_freeze_and_init_from(tmp_path):
    first = api.train(write_recipe(tmp_path), runs_dir=tmp_path / "runs")
    params = first.run_dir / "params.npz"
    recipe = write_recipe(tmp_path, **{"model__init_from": str(params), "model__freeze": [0]})
    second = api.train(recipe, runs_dir=tmp_path / "runs")
    before, after = np.load(params), np.load(second.run_dir / "params.npz")
    np.testing.assert_array_equal(before["0.W"], after["0.W"])  # frozen
    assert not np.array_equal(before["1.W"], after["1.W"])  # trained on from the loaded values


def test_init_from_with_nothing_matching_is_bad_input(tmp_path):
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, **{"7.W": np.zeros((3, 3))})
    result = train_cli(tmp_path, write_recipe(tmp_path, **{"model__init_from": str(bogus)}))
    assert result.exit_code == 2
    assert "model.init_from" in result.output and "Traceback" not in result.output


def test_ensemble_averages_members(tmp_path):
    result = train_cli(tmp_path, write_recipe(tmp_path), "--ensemble", "2")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ensemble"]["members"] == 2
    probs = [np.load(run / "members" / str(k) / "predictions" / "dev.npz")["probabilities"]
             for k in range(2)]
    ens = np.load(run / "predictions" / "dev.npz")["probabilities"]
    np.testing.assert_allclose(ens, (probs[0] + probs[1]) / 2, rtol=1e-6)


@pytest.mark.parametrize("changes,needle", [
    ({"optimiser": {"name": "adam"}}, "optimiser"),
    ({"model__layers": [{"type": "dense", "units": -3, "activation": "relu"},
                        {"type": "dense", "units": 1, "activation": "sigmoid"}]}, "model.layers.0.units"),
    ({"data__train": {"path": "missing.npz"}}, "data.train"),
    ({"model__layers": [{"type": "dense", "units": 1, "activation": "tanh"}]}, "loss"),
    ({"model__layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
      "data__train": {"builtin": "blobs", "n": 60, "classes": 5}}, "model.layers"),
])
def test_bad_recipes_exit_2_with_one_line(tmp_path, changes, needle):
    result = train_cli(tmp_path, write_recipe(tmp_path, **changes))
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_data_files_exit_2(tmp_path):
    bad = tmp_path / "nan.npz"
    np.savez(bad, x=np.array([[np.nan, 1.0], [0.0, 1.0]]), y=np.array([0, 1]))
    result = train_cli(tmp_path, write_recipe(tmp_path, **{"data__train": {"path": str(bad)},
                                                           "data__dev": None, "data__test": None,
                                                           "data__train_dev": None}))
    assert result.exit_code == 2 and "nan" in result.output.lower()
    assert str(tmp_path / "recipe.yaml") in result.output


def test_malformed_set_and_unset_variable(tmp_path):
    recipe = write_recipe(tmp_path)
    result = train_cli(tmp_path, recipe, "--set", "optimizer.learning_rate")
    assert result.exit_code == 2 and "--set" in result.output
    os.environ.pop("DLCLI_NOPE", None)
    result = train_cli(tmp_path, write_recipe(tmp_path, **{"data__train": {"path": "${DLCLI_NOPE}/x.npz"}}))
    assert result.exit_code == 2 and "DLCLI_NOPE" in result.output


def test_ctrl_c_saves_params_and_an_interrupted_summary(tmp_path):
    recipe = write_recipe(tmp_path, **{"training__epochs": 100000, "data__train": {"builtin": "moons", "n": 2000}})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dlcli.cli", "train", str(recipe), "--quiet",
                             "--runs-dir", str(tmp_path / "runs")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600  # only keeps a broken build from hanging; a cold compile is slow
    while time.time() < deadline:
        runs = list((tmp_path / "runs").glob("*/metrics.jsonl")) if (tmp_path / "runs").exists() else []
        if runs and len(runs[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = only_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] >= 3
    assert np.load(run / "params.npz")["0.W"].shape == (8, 2)
    assert "interrupted" in err


def test_show_prints_the_model_summary(tmp_path):
    result = runner.invoke(app, ["show", str(write_recipe(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "dense" in result.output and "33" in result.output


def test_runs_list_show_compare(tmp_path):
    recipe = write_recipe(tmp_path)
    train_cli(tmp_path, recipe)
    train_cli(tmp_path, recipe, "--set", "optimizer.learning_rate=0.001")
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    listed = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), "list"])
    assert listed.exit_code == 0 and all(r[-20:] in listed.output for r in runs)
    shown = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), "show", runs[0]])
    assert shown.exit_code == 0 and "avoidable" in shown.output.lower()
    compared = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), "compare", *runs])
    assert compared.exit_code == 0 and "learning_rate" in compared.output


def test_quickstart_recipe_trains(tmp_path):
    result = train_cli(tmp_path, ROOT / "recipes" / "quickstart.yaml")
    assert result.exit_code == 0, result.output
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["errors"]["test"] < 0.2


def test_data_seed_keeps_the_split_while_the_seed_changes_the_model(tmp_path):
    recipe = write_recipe(tmp_path, **{"data__seed": 11})
    a = api.train(recipe, runs_dir=tmp_path / "runs")
    b = api.train(recipe, overrides=["seed=12"], runs_dir=tmp_path / "runs")
    np.testing.assert_array_equal(a.dataset.splits["dev"].x, b.dataset.splits["dev"].x)
    assert not np.array_equal(a.model.state_dict()["0.W"], b.model.state_dict()["0.W"])
    c = api.train(write_recipe(tmp_path), overrides=["seed=12"], runs_dir=tmp_path / "runs")
    assert not np.array_equal(a.dataset.splits["dev"].x, c.dataset.splits["dev"].x)
