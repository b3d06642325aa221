"""What a new user sees (issue 9): the diagnosis with its noise, messages, terminal width,
runs of searches, the command line's own flags. Terminals are 80 columns (COLUMNS=80)."""

import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app

TINY = {"name": "tiny", "seed": 3,
        "data": {"train": {"builtin": "blobs", "n": 240, "classes": 2}, "dev": 0.25, "test": 0.25},
        "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"},
                             {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "training": {"epochs": 3, "batch_size": 32}}


def invoke(*args, columns=80, env=None):
    result = CliRunner().invoke(app, [str(a) for a in args],
                                env={"COLUMNS": str(columns), **(env or {})})
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def write_recipe(tmp_path, recipe=TINY, name="tiny.yaml", **changes):
    recipe = json.loads(json.dumps(recipe))
    for dotted, value in changes.items():
        node = recipe
        *path, last = dotted.split("__")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def only_run(runs):
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def widest(text):
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)


# -- the diagnosis -------------------------------------------------------------------------------
def test_summary_has_sizes_and_noise_and_the_table_shows_them(tmp_path):
    runs = tmp_path / "runs"
    result = invoke("train", write_recipe(tmp_path), "--runs-dir", runs)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((only_run(runs) / "summary.json").read_text())
    assert summary["sizes"] == {"train": 120, "train_dev": None, "dev": 60, "test": 60}
    noise = summary["diagnosis"]["noise"]
    assert set(noise) == {"avoidable_bias", "variance", "data_mismatch", "dev_overfitting"}
    e = summary["errors"]
    se = lambda err, n: math.sqrt(err * (1 - err) / n)
    assert noise["variance"] == pytest.approx(2 * math.hypot(se(e["dev"], 60), se(e["train"], 120)))
    assert noise["avoidable_bias"] is None and noise["data_mismatch"] is None
    out = result.stdout
    assert "±2 SE" in out and "120" in out
    words = " ".join(out.split())
    assert "Avoidable bias: unknown without a human-level error" in words
    assert "evaluation.human_level_error" in words
    assert widest(out) <= 80


def run_with(tmp_path, errors, sizes, human=None):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(
        {"name": "r", "status": "completed", "errors": errors, "sizes": sizes,
         "human_level_error": human}))
    return run


def test_bias_variance_never_advises_on_a_negative_gap(tmp_path):
    # cat_4layer: train 0%, test 26%, --human-level-error 0.01 gave "avoidable bias -1.00% ◀ focus"
    run = run_with(tmp_path, {"train": 0.0, "train_dev": None, "dev": None, "test": 0.26},
                   {"train": 209, "train_dev": None, "dev": None, "test": 50})
    result = invoke("analyze", "bias-variance", run, "--human-level-error", "0.01", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["sizes"]["test"] == 50
    d = doc["diagnosis"]
    assert d["avoidable_bias"] == pytest.approx(-0.01)
    assert d["variance"] == pytest.approx(0.26) and d["variance_from"] == "test"
    assert d["focus"] == "variance"
    table = result.stderr
    assert "variance (test)" in table and "test set standing in for a dev set" in " ".join(table.split())
    bias_line = next(line for line in table.splitlines() if "avoidable bias" in line)
    assert "focus" not in bias_line
    assert "Train a bigger network" not in table


def test_bias_variance_marks_a_gap_within_its_noise(tmp_path):
    run = run_with(tmp_path, {"train": 0.0, "train_dev": None, "dev": 0.005, "test": None},
                   {"train": 200, "train_dev": None, "dev": 200, "test": None})
    result = invoke("analyze", "bias-variance", run)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    variance_line = next(line for line in out.splitlines() if "variance" in line)
    assert "not significant" in variance_line and "focus" not in variance_line
    assert "No focus" in out and "Get more training data" not in out
    assert "Avoidable bias: unknown" in out
    assert widest(out) <= 80
