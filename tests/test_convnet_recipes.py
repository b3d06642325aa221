"""The ConvNet recipes reach the accuracies issue 6 asks of them. How long they take is
measured by hand and in benchmarks/, not asserted here (a shared machine's load decides it:
lenet5_shapes took 329 s on a fresh clone while others compiled)."""

from pathlib import Path

import pytest

from dlcli import api

from conftest import course_data

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_lenet5_on_mnist_reaches_97_percent_on_unseen_images(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCLI_DATA", str(course_data("mnist").parent))
    result = api.train(ROOT / "recipes" / "lenet5.yaml", runs_dir=tmp_path)
    splits = result.dataset.splits
    assert len(splits["train"].y) == 8000 and len(splits["test"].y) == 1000
    assert result.summary["status"] == "completed"
    assert result.summary["errors"]["test"] <= 0.03


def test_lenet5_on_builtin_shapes_reaches_95_percent(tmp_path):
    result = api.train(ROOT / "recipes" / "lenet5_shapes.yaml", runs_dir=tmp_path)
    assert result.summary["errors"]["test"] <= 0.05
