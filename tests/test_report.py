"""Each report rendered to a recording Console; the assertions read the text a person sees."""

import io
import math
import re

import pytest
import yaml
from rich.console import Console

from dlcli import report
from dlcli.strategy import diagnose

BOLD_YELLOW, BOLD_GREEN = "\x1b[1;33m", "\x1b[1;32m"
DRIVING = {"train": 0.088, "train_dev": 0.091, "dev": 0.143, "test": 0.148}


def console(width=120, styles=False):
    return Console(record=True, width=width, file=io.StringIO(), force_terminal=styles,
                   color_system="standard" if styles else None)


def text(con, styles=False):
    return con.export_text(styles=styles)


def line_with(out, needle):
    return next(line for line in out.splitlines() if needle in line)


def text_without_styles(out):
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out)


def summary(errors=DRIVING, human=0.005, **extra):
    return {"name": "driving", "status": "completed", "epochs": 100, "seconds": 12.34,
            "examples_per_second": 41000.0, "parameters": 241941, "errors": errors,
            "human_level_error": human, "diagnosis": diagnose(errors, human), **extra}


def test_errors_table_is_the_courses_staircase_with_the_focus_highlighted():
    con = console(styles=True)
    report.errors_table(summary(), con)
    out = text(con, styles=True)
    plain = text_without_styles(out)
    labels = [" ".join(w for w in line.split() if w[0] not in "0123456789—±-"
                       and w not in ("◀", "focus", "exact", "not", "significant"))
              for line in plain.splitlines()]
    staircase = ["human-level", "avoidable bias", "train", "variance", "train-dev", "data mismatch",
                 "dev", "overfitting to dev", "test"]
    assert [label for label in labels if label in staircase] == staircase
    for value in ("0.50%", "8.80%", "9.10%", "14.30%", "14.80%", "8.30%", "0.30%", "5.20%"):
        assert value in plain
    focus_line = line_with(out, "avoidable bias")
    assert "◀ focus" in focus_line and BOLD_YELLOW in focus_line
    assert "◀ focus" not in line_with(out, "data mismatch")
    assert "Focus: avoidable bias" in plain
    assert "• Train a bigger network" in plain and "Adam" in plain


def test_errors_table_missing_splits_and_no_diagnosis_stored():
    con = console()
    s = {"errors": {"train": 0.02, "train_dev": None, "dev": 0.1, "test": None}, "human_level_error": None}
    report.errors_table(s, con)  # no "diagnosis": computed from the errors
    out = text(con)
    assert "—" in line_with(out, "human-level") and "—" in line_with(out, "test")
    assert "—" in line_with(out, "avoidable bias")
    assert "8.00%" in line_with(out, "variance")  # dev - train without a train-dev set
    assert "Focus: variance" in out and "Get more training data" in out


def test_errors_table_without_any_gap():
    con = console()
    report.errors_table({"errors": {"train": 0.1}, "human_level_error": None}, con)
    out = text(con)
    assert "10.00%" in out and "◀ focus" not in out and "No gap to diagnose" in out


def test_metrics_table():
    con = console()
    report.metrics_table({"dev": {"precision": 0.8, "recall": 0.9, "f1": 0.85, "accuracy": 0.84},
                          "train": {"precision": None, "recall": 1.0, "f1": 0.5, "accuracy": 0.95}}, con)
    out = text(con)
    assert all(h in out for h in ("precision", "recall", "F1", "accuracy"))
    assert out.index("train") < out.index("dev")  # splits in their natural order
    dev = line_with(out, "dev")
    assert [v for v in dev.split() if v.endswith("%")] == ["80.00%", "90.00%", "85.00%", "84.00%"]
    assert "—" in line_with(out, "train")


def curve(costs, **kwargs):
    con = console(width=kwargs.pop("console_width", 120))
    report.learning_curve(costs, con, **kwargs)
    return text(con).splitlines()


def braille_rows(lines):
    return [line for line in lines if any(0x2800 <= ord(ch) <= 0x28FF for ch in line)]


def test_learning_curve_draws_a_falling_cost_with_axis_labels():
    costs = [0.7 - 0.2 * i / 99 for i in range(100)]
    lines = curve(costs, width=40, height=8)
    rows = braille_rows(lines)
    assert len(rows) == 8
    assert "log" not in lines[0]
    assert rows[0].lstrip().startswith("0.7 ┤") and rows[-1].lstrip().startswith("0.5 ┤")
    plots = [row.split("┤")[-1].split("│")[-1] for row in rows]
    assert all(len(p) == 40 for p in plots)
    assert plots[0][0] != "\u2800" and plots[0][-1] == "\u2800"  # starts top left...
    assert plots[-1][-1] != "\u2800" and plots[-1][0] == "\u2800"  # ...ends bottom right
    assert "epoch 1" in lines[-1] and lines[-1].rstrip().endswith("100")


def test_learning_curve_log_scale_where_costs_span_decades():
    costs = [10 ** (-i / 10) for i in range(40)]  # 1 down to 1.3e-4
    assert "log scale" in curve(costs)[0]
    assert "log scale" not in curve(costs, log=False)[0]
    assert "log scale" not in curve([0.0, 1.0], log=True)[0]  # a zero cost has no logarithm
    # on a log axis an exponential decay is a straight line: one dot-run per column band
    rows = braille_rows(curve(costs, width=40, height=10))
    middle = rows[5].split("│")[-1]
    assert 0 < sum(ch != "\u2800" for ch in middle) <= 8


def test_learning_curve_edge_cases():
    assert "no finite cost" in "\n".join(curve([math.nan]))
    single = curve([0.5], width=20, height=4)
    assert len(braille_rows(single)) == 4 and single[-1].split() == ["epoch", "1", "1"]
    flat_with_nan = braille_rows(curve([0.3, math.nan, 0.3, 0.3], width=20, height=4))
    assert any(ch != "\u2800" for ch in "".join(flat_with_nan))
    narrow = curve([1.0, 0.5], width=200, console_width=50)
    assert all(len(line) <= 50 for line in narrow)


def test_model_summary():
    con = console()
    rows = [{"index": 0, "layer": "flatten", "output_shape": (12288,), "parameters": 0},
            {"index": 1, "layer": "dense 20 relu", "output_shape": (20,), "parameters": 245780},
            {"index": 2, "layer": "conv2d 3x3 8", "output_shape": (32, 32, 8), "parameters": 224}]
    report.model_summary(rows, 246004, con, title="cat-4layer")
    out = text(con)
    assert "cat-4layer" in out and "output shape" in out
    assert "(m, 12288)" in line_with(out, "flatten")
    assert line_with(out, "dense 20 relu").rstrip().endswith("245,780")
    assert "(m, 32, 32, 8)" in out
    assert line_with(out, "total").rstrip().endswith("246,004")


def test_runs_table():
    con = console()
    runs = [{**summary(), "run": "20261126-051000-driving"},
            {"run": "[bold]odd", "status": "diverged", "epochs": 3, "errors": {"train": None}}]
    report.runs_table(runs, con)
    out = text(con)
    first = line_with(out, "driving")
    for value in ("completed", "100", "12.3", "8.80%", "14.30%", "14.80%", "avoidable bias"):
        assert value in first
    second = line_with(out, "odd")
    assert "[bold]odd" in second and "diverged" in second and "—" in second


RECIPE = """name: driving
seed: 1
data: {augment: [flip_horizontal]}
model:
  layers:
    - {type: flatten}
    - {type: dense, units: 20, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
optimizer: {name: adam, learning_rate: 1.0e-3, decay: {schedule: none}}
training: {epochs: 100, batch_size: full}
"""


def test_run_details():
    con = console()
    s = summary(metrics={"dev": {"precision": 0.8, "recall": 0.9, "f1": 0.85, "accuracy": 0.84}},
                satisficing={"predict_ms_per_example": {"value": 0.02, "max": 100, "met": True}})
    records = [{"epoch": e, "cost": 1 / e} for e in range(1, 31)]
    report.run_details(s, RECIPE, records, con)
    out = text(con)
    assert "driving" in out and "completed" in out and "41,000" in out and "241,941" in out
    assert "flatten → dense(20, relu) → dense(1, sigmoid)" in out
    assert "0.001" in line_with(out, "optimizer.learning_rate")
    assert "full" in line_with(out, "training.batch_size")
    assert "Errors and diagnosis" in out and "Metrics" in out and "85.00%" in out
    assert "yes" in line_with(out, "predict_ms_per_example")
    assert "Learning curve" in out and out.rstrip().endswith("30")
    assert "diverged at" not in out


def test_run_details_of_a_diverged_run_without_records():
    con = console()
    report.run_details(summary(status="diverged", diverged_at_epoch=7), RECIPE, [], con)
    out = text(con)
    assert "epoch 7" in line_with(out, "diverged at") and "Learning curve" not in out


def test_compare_table_shows_differing_settings_and_highlights_the_best():
    r1 = yaml.safe_load(RECIPE)
    r2 = yaml.safe_load(RECIPE.replace("1.0e-3", "1.0e-2").replace("units: 20", "units: 64")
                        .replace("[flip_horizontal]", "[]").replace("name: driving", "name: other"))
    s2 = summary(errors={"train": 0.05, "train_dev": 0.09, "dev": 0.12, "test": None})
    con = console(styles=True)
    report.compare_table([("a", summary(), r1), ("b[1]", s2, r2)], con)
    out = text(con, styles=True)
    plain = text_without_styles(out)
    assert "b[1]" in plain
    assert "0.001" in line_with(plain, "optimizer.learning_rate") and "0.01" in line_with(plain, "optimizer.learning_rate")
    units = line_with(plain, "model.layers.1.units")
    assert "20" in units and "64" in units
    assert "flip_horizontal" in line_with(plain, "data.augment")
    assert "seed" not in plain and "training.epochs" not in plain  # the same in both runs
    dev = line_with(out, "  dev ")
    assert dev.index(BOLD_GREEN) > text_without_styles(dev).index("14.30%")  # b's 12.00% is best
    variance = line_with(out, "variance")
    assert BOLD_GREEN in variance and text_without_styles(variance).split()[1] == "0.30%"
    assert BOLD_GREEN not in line_with(out, "human-level")  # equal values: nothing to highlight
    assert "—" in line_with(plain, "test")


def test_compare_table_with_identical_recipes():
    con = console()
    r = yaml.safe_load(RECIPE)
    report.compare_table([("a", summary(), r), ("b", summary(), dict(r))], con)
    assert "same recipe settings" in text(con)


def record(e):
    return {"epoch": e, "iteration": e * 5, "cost": 1 / e, "learning_rate": 0.0075,
            "train_error": 0.1, "dev_error": 0.2, "seconds": e * 0.01}


def test_training_progress_shows_the_last_epoch():
    con = console()
    with report.TrainingProgress(50, con) as progress:
        for e in range(1, 51):
            progress.update(e, record(e))
    out = text(con)
    assert "50/50" in out
    assert "cost 0.0200" in out and "lr 0.0075" in out and "train 10.00%" in out and "dev 20.00%" in out


def test_training_progress_quiet_shows_nothing():
    con = console()
    with report.TrainingProgress(5, con, quiet=True) as progress:
        for e in range(1, 6):
            progress.update(e, record(e))
    assert text(con).strip() == ""


def test_training_progress_throttles_and_shows_an_early_stop():
    con = console()
    with report.TrainingProgress(100_000, con, live=True) as progress:
        calls = []
        rich_update = progress._progress.update
        progress._progress.update = lambda *a, **k: (calls.append(k), rich_update(*a, **k))
        for e in range(1, 20_001):  # thousands of epochs a second: Rich hears of a few
            progress.update(e, record(e))
    assert 1 <= len(calls) <= 20
    assert calls[-1]["completed"] == 20_000  # the pending record is shown on exit
    assert "20000/100000" in text(con)


def test_training_progress_without_dev_error():
    con = console()
    with report.TrainingProgress(1, con) as progress:
        progress.update(1, {k: v for k, v in record(1).items() if k != "dev_error"})
    out = text(con)
    assert "dev" not in out and "train 10.00%" in out


@pytest.mark.parametrize("value, shown", [(None, "null"), (True, "true"), (1e-3, "0.001"),
                                          ("full", "full"), ([64, 128], "[64, 128]")])
def test_settings_read_as_yaml(value, shown):
    assert report._setting(value) == shown
