"""`dlcli profile RECIPE` and `dlcli train RECIPE --profile`: the per-layer table and its JSON.

No wall-clock assertions: what is checked is the shape of the answer (every layer, nesting,
shares adding up, fields), that profiling writes nothing, and that train --profile trains
exactly as without the flag.
"""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.optim import make_optimizer
from dlcli.profile import profile_steps

runner = CliRunner()

DENSE = {
    "name": "dense", "seed": 3,
    "data": {"train": {"builtin": "moons", "n": 200}, "dev": 0.2},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                         {"type": "dropout", "keep_prob": 0.9},
                         {"type": "dense", "units": 1, "activation": "sigmoid"}]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 2, "batch_size": 32},
}


def conv(filters, **kw):
    return {"type": "conv2d", "filters": filters, "size": 3, "padding": "same", **kw}


CONV = {
    "name": "conv", "seed": 0,
    "data": {"train": {"builtin": "shapes", "n": 48, "size": 12}, "scale": 255},
    "model": {"layers": [conv(4, activation="relu"), {"type": "maxpool", "size": 2},
                         {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]},
    "optimizer": {"name": "momentum", "learning_rate": 0.01},
    "training": {"epochs": 1, "batch_size": 16},
}

RESIDUAL = {
    **CONV, "name": "residual",
    "data": {**CONV["data"], "augment": ["flip_horizontal"]},
    "model": {"layers": [conv(4, bias=False), {"type": "batchnorm"},
                         {"type": "residual", "layers": [conv(4, bias=False), {"type": "batchnorm"},
                                                         {"type": "activation", "activation": "relu"},
                                                         conv(4, bias=False)]},
                         {"type": "global_avgpool"}, {"type": "dense", "units": 3, "activation": "softmax"}]},
}

RECURRENT = {
    "name": "recurrent", "seed": 1,
    "data": {"train": {"builtin": "dates", "n": 64}},  # no dev data: profile needs none
    "model": {"layers": [{"type": "bidirectional", "layer": {"type": "gru", "units": 4,
                                                            "return_sequences": True}},
                         {"type": "attention_decoder", "units": 6, "steps": 10, "attention_units": 4},
                         {"type": "dense", "units": 11, "activation": "softmax"}]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 1, "batch_size": 16},
}


def write(tmp_path, recipe, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def profile_json(tmp_path, recipe, *args):
    result = invoke("profile", write(tmp_path, recipe), "--steps", 3, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def top_shares(doc):
    return (sum(layer["share"] for layer in doc["layers"] if layer["depth"] == 0)
            + doc["loss_share"] + doc["update_share"] + doc["other_share"])


FIELDS = {"layers", "loss_ms", "update_ms", "other_ms", "step_ms", "examples_per_second",
          "warmup_seconds", "steps", "batch_size"}
LAYER_FIELDS = {"index", "name", "type", "depth", "forward_ms", "backward_ms", "share"}


@pytest.mark.parametrize("recipe, types", [
    (DENSE, ["dense", "dropout", "dense"]),
    (CONV, ["conv2d", "maxpool", "flatten", "dense"]),
])
def test_json_lists_every_layer_and_the_shares_add_up(tmp_path, recipe, types):
    doc = profile_json(tmp_path, recipe)
    assert FIELDS <= set(doc)
    assert all(set(layer) == LAYER_FIELDS for layer in doc["layers"])
    assert [layer["type"] for layer in doc["layers"]] == types
    assert [layer["index"] for layer in doc["layers"]] == [str(i) for i in range(len(types))]
    assert all(layer["depth"] == 0 for layer in doc["layers"])
    assert doc["steps"] == 3 and doc["batch_size"] == recipe["training"]["batch_size"]
    assert top_shares(doc) == pytest.approx(1.0, abs=1e-3)
    for layer in doc["layers"]:
        assert layer["forward_ms"] >= 0 and layer["backward_ms"] >= 0 and 0 <= layer["share"] <= 1
    assert doc["step_ms"] > 0 and doc["examples_per_second"] > 0 and doc["warmup_seconds"] >= 0
    assert doc["update_ms"] > 0  # the recipe's optimizer ran through the clock
    assert doc["optimizer"] == recipe["optimizer"]["name"]
    assert doc["layers"][-1]["name"].endswith(recipe["model"]["layers"][-1]["activation"])


def test_residual_block_nests_its_layers_under_it(tmp_path):
    doc = profile_json(tmp_path, RESIDUAL)
    rows = [(layer["index"], layer["type"], layer["depth"]) for layer in doc["layers"]]
    assert rows == [("0", "conv2d", 0), ("1", "batchnorm", 0), ("2", "residual", 0),
                    ("2.layers.0", "conv2d", 1), ("2.layers.1", "batchnorm", 1),
                    ("2.layers.2", "activation", 1), ("2.layers.3", "conv2d", 1),
                    ("3", "global_avgpool", 0), ("4", "dense", 0)]
    by = {layer["index"]: layer for layer in doc["layers"]}
    block = by["2"]
    inner = [by[f"2.layers.{k}"] for k in range(4)]
    # the block's time includes its layers' in every step, so its median is never below theirs
    for phase in ("forward_ms", "backward_ms"):
        assert block[phase] >= max(layer[phase] for layer in inner) > 0
    assert top_shares(doc) == pytest.approx(1.0, abs=1e-3)


def test_recurrent_and_bidirectional_layers(tmp_path):
    doc = profile_json(tmp_path, RECURRENT, "--batch-size", 8)
    rows = [(layer["index"], layer["type"], layer["depth"]) for layer in doc["layers"]]
    assert rows == [("0", "bidirectional", 0), ("0.forward", "gru", 1), ("0.backward", "gru", 1),
                    ("1", "attention_decoder", 0), ("1.lstm", "lstm", 1), ("2", "dense", 0)]
    assert doc["batch_size"] == 8
    by = {layer["index"]: layer for layer in doc["layers"]}
    # the decoder runs its post-attention LSTM's cell inline: no time of its own, said as null
    assert by["1.lstm"]["forward_ms"] is None and by["1.lstm"]["share"] is None
    assert all(by[i]["forward_ms"] > 0 and by[i]["backward_ms"] > 0
               for i in ("0", "0.forward", "0.backward", "1", "2"))
    assert top_shares(doc) == pytest.approx(1.0, abs=1e-3)


def test_table_indents_nested_layers_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLCLI_RUNS", str(tmp_path / "runs"))
    recipe = write(tmp_path, RESIDUAL)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = invoke("profile", recipe, "--steps", 2)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    block = next(line for line in lines if "2  residual" in line)
    nested = next(line for line in lines if "2.layers.0" in line)
    assert nested.index("2.layers.0") > block.index("2  residual")  # indented under its block
    for row in ("loss", "momentum update", "other", "step", "examples/s",
                "Warm-up"):
        assert row in result.stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: must be a positive integer, got 0"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    (["--warmup", "-1"], "--warmup: must be 0 or more, got -1"),
    (["--set", "model.layers.0.units=-3"], "model.layers.0.units"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = invoke("profile", write(tmp_path, DENSE), *args)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.output


def test_missing_recipe_is_exit_2(tmp_path):
    result = invoke("profile", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "no such recipe file" in result.stderr


@pytest.mark.parametrize("recipe", [RESIDUAL, RECURRENT], ids=["residual", "recurrent"])
def test_train_profile_writes_profile_json_and_trains_as_without(tmp_path, recipe):
    update = f"{recipe['optimizer']['name']} update"
    recipe = write(tmp_path, recipe)
    runs = {}
    for flag in ([], ["--profile"]):
        out = tmp_path / ("profiled" if flag else "plain")
        result = invoke("train", recipe, "--runs-dir", out, *flag)
        assert result.exit_code == 0, result.output
        (runs[bool(flag)],) = [p for p in out.iterdir() if p.is_dir()]
        if flag:  # the table comes after the run's tables, before "run saved in"
            assert update in result.stdout
            assert result.stdout.index("Errors") < result.stdout.index(update) \
                < result.stdout.index("run saved in")
    doc = json.loads((runs[True] / "profile.json").read_text())
    assert FIELDS <= set(doc) and doc["batch_size"] == 16 and doc["steps"] == 20
    assert top_shares(doc) == pytest.approx(1.0, abs=1e-3)
    assert not (runs[False] / "profile.json").exists()
    summary = json.loads((runs[True] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 1
    with np.load(runs[False] / "params.npz") as a, np.load(runs[True] / "params.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:  # the profile ran on a twin: the run trained exactly as without it
            np.testing.assert_array_equal(a[key], b[key])


def test_profile_steps_takes_off_its_clocks():
    """The job's wrappers live on the instances for the profiled steps only."""
    from dlcli.nn.model import build_model
    model = build_model({"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                                    {"type": "dense", "units": 3, "activation": "softmax"}]},
                        "auto", 0.0, (5,), "float64")
    opt = make_optimizer({"name": "adam", "learning_rate": 0.01})
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    result = profile_steps(model, opt, x, y, batch_size=8, steps=4, warmup=1)
    assert result.batch_size == 8 and result.steps == 4 and len(result.layers) == 2
    assert opt.t == 5  # warm-up and timed steps were real updates
    for layer in model.layers:
        assert "forward" not in vars(layer) and "backward" not in vars(layer)
    assert "update" not in vars(opt) and "forward" not in vars(model.loss)
    assert json.loads(json.dumps(result.to_json()))["layers"][0]["index"] == "0"


def test_help_shows_flags_as_flags_within_80_columns():
    out = runner.invoke(app, ["profile", "--help"], env={"COLUMNS": "80"}).stdout
    assert "--steps" in out and "--batch-size" in out and "--json" in out and "<bool>" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "--profile" in runner.invoke(app, ["train", "--help"], env={"COLUMNS": "80"}).stdout


def test_the_cli_and_the_job_import_neither_numpy_nor_numba():
    import subprocess
    import sys
    code = ("import sys, dlcli.cli, dlcli.profile; "
            "print(sorted(m for m in ('numpy', 'numba') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
