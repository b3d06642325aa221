"""What a new user sees (issue 9): the diagnosis with its noise, messages, terminal width,
runs of searches, the command line's own flags. Terminals are 80 columns (COLUMNS=80)."""

import json
import math
import re

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
    """The widest line a person sees: terminal escapes left out, redraws (\r) as lines."""
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text).replace("\r", "\n")
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


# -- progress and messages -----------------------------------------------------------------------
def test_the_live_line_fits_80_columns_keeping_epochs_time_and_eta():
    from dlcli.progress import live_line
    record = {"cost": 0.123456, "learning_rate": 0.0075, "train_error": 0.0533, "dev_error": 0.0933}
    for epoch, epochs in ((1, 5), (1234, 15000), (15000, 15000)):
        line = live_line(epoch, epochs, 0.4, 3725.0, record, (4096, 60000, 123456.0, 64, 64), 79)
        assert len(line) <= 79
        assert f"epoch {epoch}/{epochs}" in line and "1:02:05<1:33:08" in line
        assert "cost 0.1235" in line and "train 5.33%" in line and "dev 9.33%" in line
    wide = live_line(12, 200, 0.4, 3.0, record, (4096, 60000, 123456.0, 64, 64), 200)
    assert "lr 0.0075" in wide and "123k ex/s" in wide and "batch 64/938" in wide
    # at 80 columns a short run keeps the batch count beside the errors
    line = live_line(37, 200, 0.18, 3.0, record, (384, 600, 48210.0, 6, 64), 79)
    assert "train 5.33% dev 9.33% batch 6/10" in line and len(line) <= 79


def test_a_terminal_sees_progress_within_an_epoch_at_80_columns():
    import io

    from rich.console import Console

    from dlcli.progress import TrainingProgress
    con = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    with TrainingProgress(10, con) as progress:
        progress.REFRESH = 0.0
        progress.batch(1, 640, 6400)
        mid = progress._line()
        progress.update(1, {"epoch": 1, "cost": 0.5, "learning_rate": 0.01, "train_error": 0.2})
        for done in range(640, 3201, 640):
            progress.batch(2, done, 6400)
        second = progress._line()
    assert mid.startswith("epoch 1/10") and "batch 1/10" in mid and "ex/s" in mid
    assert second.startswith("epoch 2/10") and "batch 5/10" in second and "cost 0.5000" in second
    assert all(len(line) < 80 for line in (mid, second))
    assert widest(con.file.getvalue()) <= 80


def test_a_log_gets_one_plain_line_per_epoch(tmp_path):
    result = invoke("train", write_recipe(tmp_path), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("cost " in line and "train " in line and "dev " in line for line in lines)
    assert "\r" not in result.stdout and "\x1b[" not in result.stdout  # no redraws in a file


def test_a_long_run_logs_at_most_one_line_a_second():
    import io

    from rich.console import Console

    from dlcli.progress import TrainingProgress
    con = Console(file=io.StringIO(), width=80)
    with TrainingProgress(5000, con) as progress:
        for e in range(1, 3001):  # thousands of epochs a second, stopped early
            progress.update(e, {"epoch": e, "cost": 1 / e, "learning_rate": 0.01})
    lines = con.file.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/5000 - ") and lines[-1].startswith("epoch 3000/5000 - ")
    assert len(lines) < 10


def test_early_stopping_says_when_why_and_which_epoch_was_kept(tmp_path):
    recipe = write_recipe(tmp_path, training__epochs=300,
                          training__early_stopping={"metric": "dev_error", "patience": 3})
    result = invoke("train", recipe, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())
    stopped, best = summary["stopped_early_at_epoch"], summary["best_epoch"]
    assert stopped == best + 3
    words = " ".join(result.stdout.split())
    assert (f"Early stopping at epoch {stopped} of 300: dev_error did not improve for 3 epochs"
            in words)
    assert f"at epoch {best}); kept epoch {best}'s parameters" in words


def test_early_stopping_without_restore_says_the_last_epoch_was_kept(tmp_path):
    recipe = write_recipe(tmp_path, training__epochs=300, training__early_stopping={
        "metric": "train_cost", "patience": 1, "min_delta": 0.5, "restore_best": False})
    result = invoke("train", recipe, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    stopped = json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())["stopped_early_at_epoch"]
    words = " ".join(result.stdout.split())
    assert "train_cost did not improve by more than 0.5 for 1 epoch (best" in words
    assert f"kept the last epoch's parameters (epoch {stopped}; restore_best: false)" in words


def test_quiet_prints_only_where_the_run_was_saved_on_stderr(tmp_path):
    result = invoke("train", write_recipe(tmp_path), "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"run saved in {only_run(tmp_path / 'runs')}"


def test_ctrl_c_says_stopping_at_once_then_saves(tmp_path, monkeypatch):
    from dlcli import train as train_module
    real, steps = train_module.train_step, []

    def interrupted_step(*args):
        steps.append(1)
        if len(steps) == 5:
            raise KeyboardInterrupt
        return real(*args)

    said = []
    monkeypatch.setattr(train_module, "train_step", interrupted_step)
    import dlcli.api as api
    real_write = api.atomic_write_npz
    monkeypatch.setattr(api, "atomic_write_npz", lambda *a: (said.append(len(messages)), real_write(*a)))
    messages = []
    from dlcli.progress import TrainingProgress
    real_stopping = TrainingProgress.stopping
    monkeypatch.setattr(TrainingProgress, "stopping",
                        lambda self, m: (messages.append(m), real_stopping(self, m)))
    result = invoke("train", write_recipe(tmp_path), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 130
    assert len(messages) == 1 and messages[0].startswith("stopping: saving")
    assert said and said[0] == 1  # said before the first file was saved
    assert "dlcli: stopping: saving" in result.stderr
    summary = json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())
    assert summary["status"] == "interrupted"


def test_an_ensemble_without_quiet_prints_its_tables(tmp_path):
    result = invoke("train", write_recipe(tmp_path), "--runs-dir", tmp_path / "runs", "--ensemble", "2")
    assert result.exit_code == 0, result.stderr
    assert "Errors and diagnosis" in result.stdout and "run saved in" in result.stdout
    run = only_run(tmp_path / "runs")
    assert json.loads((run / "summary.json").read_text())["ensemble"]["members"] == 2


# -- the course's files --------------------------------------------------------------------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_course_init_draws_as_the_course_does(tmp_path):
    recipe = write_recipe(tmp_path, model={"init": "he", "layers": [
        {"type": "dense", "units": 5, "activation": "relu"}, {"type": "dropout", "keep_prob": 0.8},
        {"type": "dense", "units": 1, "activation": "sigmoid"}]})
    result = invoke("course-init", recipe, "--seed", "3")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "tiny_course_init.npz"
    assert "--set model.init_from=tiny_course_init.npz" in result.stdout
    np.random.seed(3)
    w0 = np.random.randn(5, 2) * math.sqrt(2 / 2)
    w2 = np.random.randn(1, 5) * math.sqrt(2 / 5)
    with np.load(out) as f:
        assert sorted(f.files) == ["0.W", "0.b", "2.W", "2.b"]  # the dropout layer has none
        assert np.array_equal(f["0.W"], w0) and np.array_equal(f["2.W"], w2)
        assert not f["0.b"].any() and f["2.b"].shape == (1, 1)
    # not a course recipe and no seed: bad input, not a guess
    assert invoke("course-init", recipe).exit_code == 2


def test_the_readme_reproduction_works_as_written(tmp_path):
    from conftest import course_data
    course_data("generated_2d", "moons_opt.npz")
    recipe = tmp_path / "moons_gd.yaml"
    recipe.write_text((ROOT / "recipes" / "moons_gd.yaml").read_text())
    env = {"DLCLI_DATA": str(course_data())}
    result = invoke("course-init", recipe, env=env)
    assert result.exit_code == 0, result.stderr
    command = result.stdout.splitlines()[-1].split()
    assert command[:3] == ["dlcli", "train", str(recipe)]
    result = invoke(*command[1:], "--set", "training.epochs=1", "--runs-dir", tmp_path / "runs",
                    "--quiet", env=env)
    assert result.exit_code == 0, result.stderr
    first = json.loads((only_run(tmp_path / "runs") / "metrics.jsonl").read_text().splitlines()[0])
    assert first["cost"] == pytest.approx(0.702405, abs=2e-3)  # COURSE_NUMBERS.md section 7


@pytest.mark.slow
def test_moons_recipes_show_the_lesson_with_dlcli_initialisation(tmp_path):
    from conftest import course_data
    from dlcli import api
    course_data("generated_2d", "moons_opt.npz")
    accuracy = {}
    for opt in ("gd", "momentum", "adam"):
        result = api.train(ROOT / "recipes" / f"moons_{opt}.yaml", runs_dir=tmp_path / "runs")
        accuracy[opt] = 1 - result.summary["errors"]["train"]
    assert accuracy["adam"] >= 0.93 and accuracy["adam"] > accuracy["gd"] + 0.05
    assert abs(accuracy["momentum"] - accuracy["gd"]) < 0.02


# -- runs and searches ---------------------------------------------------------------------------
def fake_runs(root):
    """Two runs and a search, as their files are written."""
    for name, focus, status in (("20261201-101500-cat-4layer-with-a-long-name", "dev_overfitting", "completed"),
                                ("20261201-111500-quickstart", "variance", "interrupted")):
        run = root / name
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({
            "name": name, "status": status, "epochs": 2500, "seconds": 1234.5,
            "errors": {"train": 0.0533, "train_dev": 0.08, "dev": 0.0933, "test": 0.1467},
            "diagnosis": {"focus": focus}}))
    search = root / "20261201-121500-search-planar-search"
    search.mkdir()
    (search / "search.yaml").write_text(yaml.safe_dump({
        "name": "search-planar", "evaluation": {"metric": "error"},
        "search": {"trials": 4, "rounds": 2, "space": {"optimizer.learning_rate": {"log_uniform": [1e-4, 1]},
                                                       "model.layers.0.units": {"int_uniform": [2, 64]}}}}))
    (search / "best.yaml").write_text("name: search-planar\n")
    trials = [(0, 0.2, 0.21, "completed"), (1, 0.05, 0.0625, "completed"), (2, None, None, "failed")]
    (search / "trials.jsonl").write_text("".join(json.dumps({
        "trial": t, "round": 0, "seed": 1 + t, "status": status, "metric": dev, "seconds": 2.5,
        "values": {"optimizer.learning_rate": 0.01 * (t + 1), "model.layers.0.units": 8 * (t + 1)},
        "errors": None if dev is None else {"train": train, "dev": dev}}) + "\n"
        for t, train, dev, status in trials))
    return search


@pytest.mark.parametrize("where", ["before", "after"])
def test_runs_list_takes_runs_dir_before_or_after_list(tmp_path, where):
    fake_runs(tmp_path / "elsewhere")
    args = ["runs", "--runs-dir", tmp_path / "elsewhere", "list"] if where == "before" else \
        ["runs", "list", "--runs-dir", tmp_path / "elsewhere"]
    result = invoke(*args, columns=200)
    assert result.exit_code == 0, result.stderr
    assert "20261201-111500-quickstart" in result.stdout


def test_runs_list_shows_searches_and_fits_80_columns(tmp_path):
    fake_runs(tmp_path / "runs")
    wide = invoke("runs", "list", "--runs-dir", tmp_path / "runs", columns=200).stdout
    line = next(line for line in wide.splitlines() if "search-planar-search" in line)
    assert "3 trials" in line and "best #1 of 3" in line and "6.25%" in line and "5.00%" in line
    out = invoke("runs", "list", "--runs-dir", tmp_path / "runs").stdout
    assert widest(out) <= 80
    header = next(line for line in out.splitlines() if line.strip().startswith("run"))
    assert header.split() == ["run", "train", "dev", "test", "focus"]
    for name in ("20261201-101500-cat-4layer-with-a-long-name", "20261201-111500-quickstart"):
        assert name in out  # never cut
    assert "14.67%" in out and "dev overfit" in out and "best #1 of 3" in out


def test_runs_show_a_search_lists_its_trials_best_first(tmp_path):
    search = fake_runs(tmp_path / "runs")
    for target in (search, search.name):
        result = invoke("runs", "show", target, "--runs-dir", tmp_path / "runs")
        assert result.exit_code == 0, result.stderr
        out = result.stdout
        words = " ".join(out.split())
        assert "3 finished of 8" in words and "2 completed, 1 failed" in words
        assert "best trial 1: error 0.0625" in words and "train it again dlcli train" in words
        rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
        assert [r[0] for r in rows] == ["1", "0"]  # best first, the failed trial left out
        assert sorted(rows[0][1:3]) == ["0.02", "16"]
        assert widest(out) <= 80


def test_every_table_of_a_trained_run_fits_80_columns(tmp_path):
    runs = tmp_path / "runs"
    recipe = write_recipe(tmp_path, name="a-recipe-with-a-rather-long-name-for-its-runs.yaml")
    result = invoke("train", recipe, "--runs-dir", runs)
    assert result.exit_code == 0
    assert widest(result.stdout) <= 80
    invoke("train", recipe, "--runs-dir", runs, "--set", "optimizer.learning_rate=0.01", "--quiet")
    a, b = sorted(p.name for p in runs.iterdir())
    for args in (("runs", "show", a), ("runs", "compare", a, b), ("runs", "list"), ("show", recipe)):
        result = invoke(*args, "--runs-dir", runs) if args[0] == "runs" else invoke(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert widest(result.stdout) <= 80, (args, result.stdout)


# -- the command line's own flags ----------------------------------------------------------------
def test_version():
    import dlcli
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"dlcli {dlcli.__version__}"


def test_shell_completion_is_offered():
    assert "--install-completion" in invoke("--help").stdout
    import subprocess
    import sys
    # Typer names the shell from the process's ancestors, not from an argument: under a bash
    # that does not exec it away (a second command), as from a terminal, whoever started pytest.
    script = ('"$0" -c "import sys; sys.argv[0] = \'dlcli\'; from dlcli.cli import main; main()" '
              '--show-completion; status=$?; exit $status')
    done = subprocess.run(["bash", "-c", script, sys.executable], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "_dlcli_completion" in done.stdout and "complete " in done.stdout


@pytest.mark.parametrize("command", [["train"], ["search"], ["gradcheck"], ["analyze", "errors"],
                                     ["analyze", "bias-variance"], []])
def test_boolean_flags_are_shown_as_flags(command):
    out = invoke(*command, "--help").stdout
    assert "<bool>" not in out and "--help" in out
    assert widest(out) <= 80


# -- a user's own CSV ----------------------------------------------------------------------------
def csv_recipe(tmp_path, text, x=None, test=None, out="sigmoid", **data):
    (tmp_path / "data.csv").write_text(text)
    source = {"path": "data.csv", "y": "label", **({"x": x} if x is not None else {})}
    recipe = {"name": "csv", "seed": 0, "data": {"train": source, **data},
              "model": {"layers": [{"type": "dense", "units": 1 if out == "sigmoid" else 3,
                                    "activation": out}]},
              "training": {"epochs": 2, "batch_size": 8}}
    if test is not None:
        (tmp_path / "test.csv").write_text(test)
        recipe["data"]["test"] = {"path": "test.csv", "y": "label"}
    path = tmp_path / "csv.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def load(recipe_path):
    from dlcli import api
    return api.load_data(api.as_recipe(recipe_path))


ROWS = "a,b,c,label\n" + "".join(f"{i},{10 * i},{-i},{'dog' if i % 3 else 'cat'}\n" for i in range(12))


def test_csv_x_selects_the_feature_columns(tmp_path):
    every = load(csv_recipe(tmp_path, ROWS))
    assert every.input_shape == (3,)
    two = load(csv_recipe(tmp_path, ROWS, x=["c", "a"]))
    assert two.input_shape == (2,)
    assert np.array_equal(two.splits["train"].x[:, 0], -two.splits["train"].x[:, 1])
    one = load(csv_recipe(tmp_path, ROWS, x="b"))
    assert one.input_shape == (1,) and sorted(one.splits["train"].x[:, 0]) == [10.0 * i for i in range(12)]


@pytest.mark.parametrize("x", ["nope", ["a", "nope"]])
def test_csv_unknown_column_is_bad_input(tmp_path, x):
    result = invoke("train", csv_recipe(tmp_path, ROWS, x=x), "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "data.train.x" in result.stderr and "'nope'" in result.stderr and "a, b, c, label" in result.stderr


def test_csv_text_labels_are_classes_with_their_names_kept(tmp_path):
    data = load(csv_recipe(tmp_path, ROWS))
    assert data.class_names == ["cat", "dog"] and data.n_classes == 2
    y = data.splits["train"].y
    assert sorted(y.tolist()) == [0] * 4 + [1] * 8
    result = invoke("train", csv_recipe(tmp_path, ROWS), "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    assert json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())["classes"] == ["cat", "dog"]


def test_csv_labels_1_and_2_are_two_classes(tmp_path):
    rows = "a,label\n" + "".join(f"{i},{1 + i % 2}\n" for i in range(10))
    data = load(csv_recipe(tmp_path, rows))
    assert data.n_classes == 2 and data.class_names == ["1", "2"]
    assert set(data.splits["train"].y.tolist()) == {0, 1}
    # a sigmoid output trains on them (before, they were three classes and bad input)
    result = invoke("train", csv_recipe(tmp_path, rows), "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr


def test_csv_held_out_labels_take_the_train_classes(tmp_path):
    test = "a,b,c,label\n1,2,3,dog\n4,5,6,dog\n"
    data = load(csv_recipe(tmp_path, ROWS, test=test))
    assert data.splits["test"].y.tolist() == [1, 1]  # dog is class 1 of the train source's
    result = invoke("train", csv_recipe(tmp_path, ROWS, test="a,b,c,label\n1,2,3,cow\n"), "--quiet",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "'cow'" in result.stderr and "data.test.y" in result.stderr


MISSING_ROWS = "a,b,label\n1,2,0\n3,,1\n5,6,0\n7,NA,1\n9,10,0\n"


def test_csv_missing_values_are_bad_input_naming_row_and_column(tmp_path):
    result = invoke("train", csv_recipe(tmp_path, MISSING_ROWS), "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "row 3, column 'b': missing value" in result.stderr and "data.missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_csv_missing_drop_and_mean(tmp_path):
    dropped = load(csv_recipe(tmp_path, MISSING_ROWS, missing="drop")).splits["train"]
    assert sorted(dropped.x[:, 1].tolist()) == [2.0, 6.0, 10.0]
    mean = load(csv_recipe(tmp_path, MISSING_ROWS, missing="mean")).splits["train"]
    assert sorted(mean.x[:, 1].tolist()) == [2.0, 6.0, 6.0, 6.0, 10.0]
    no_label = "a,label\n1,0\n2,\n3,1\n"
    result = invoke("train", csv_recipe(tmp_path, no_label, missing="mean"), "--quiet",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "row 3, column 'label'" in result.stderr
    assert load(csv_recipe(tmp_path, no_label, missing="drop")).splits["train"].x.shape == (2, 1)
    result = invoke("train", csv_recipe(tmp_path, MISSING_ROWS, missing="sometimes"), "--quiet")
    assert result.exit_code == 2 and "data.missing" in result.stderr


# -- multi-class metrics -------------------------------------------------------------------------
def test_multiclass_runs_get_per_class_and_macro_metrics(tmp_path):
    from sklearn import metrics as sk
    recipe = write_recipe(tmp_path, data={"train": {"builtin": "shapes", "n": 90, "size": 8}, "dev": 0.3,
                                          "scale": 255, "flatten": True},
                          model={"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]})
    result = invoke("train", recipe, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    run = only_run(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"] == ["circle", "square", "triangle"]
    dev = summary["metrics"]["dev"]
    with np.load(run / "predictions" / "dev.npz") as p:
        y_true, y_pred = p["y_true"], p["y_pred"]
    assert dev["f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0))
    assert dev["precision"] == pytest.approx(sk.precision_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0))
    assert dev["recall"] == pytest.approx(sk.recall_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0))
    assert dev["accuracy"] == pytest.approx(1 - summary["errors"]["dev"])
    f1 = sk.f1_score(y_true, y_pred, average=None, labels=[0, 1, 2], zero_division=0)
    assert [r["f1"] for r in dev["per_class"]] == pytest.approx(f1.tolist())
    assert [r["name"] for r in dev["per_class"]] == ["circle", "square", "triangle"]
    out = result.stdout
    assert "Metrics (macro averages" in out and "Per class (dev)" in out and "2 triangle" in out
    assert widest(out) <= 80


def test_a_search_table_of_many_keys_splits_to_fit_80_columns(tmp_path):
    recipe = write_recipe(tmp_path, search={"trials": 3, "space": {
        "optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0]},
        "optimizer.beta1": {"one_minus_log_uniform": [0.8, 0.999]},
        "optimizer.beta2": {"one_minus_log_uniform": [0.9, 0.9999]},
        "model.layers.0.units": {"log_int_uniform": [2, 64]},
        "regularization.l2": {"uniform": [0.0, 0.1]},
        "training.batch_size": {"choice": [32, 64, 128]}}})
    result = invoke("search", recipe, "--dry-run")
    assert result.exit_code == 0, result.stderr
    out = result.stdout + result.stderr
    assert widest(out) <= 80
    headers = [line.split() for line in out.splitlines() if line.split()[:1] == ["trial"]]
    assert len(headers) >= 2 and all(h[0] == "trial" for h in headers)
    shown = {name for h in headers for name in h}
    assert {"learning_rate", "beta1", "beta2", "units", "l2", "batch_size"} <= shown  # no name cut
    assert "(1/2)" in out


def test_a_search_logs_a_line_per_trial_off_a_terminal():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from dlcli.search import TrialLog
    con = Console(file=io.StringIO(), width=80)
    log = TrialLog(con)
    result = SimpleNamespace(records={}, trials=[0, 1, 2], best=None,
                             settings=SimpleNamespace(metric="error"))
    log.update(result, {0, 1})
    result.records[1] = {"status": "completed", "metric": 0.25, "errors": {"train": 0.2, "dev": 0.25}}
    result.best = {"trial": 1}
    log.update(result, {0})
    log.update(result, {0})  # nothing new: nothing printed
    result.records[0] = {"status": "failed", "metric": None, "errors": None}
    log.update(result, set())
    assert con.file.getvalue().splitlines() == [
        "trial 1 (1/3 finished) - completed - error 0.25 - train 0.2 - dev 0.25 - best: trial 1",
        "trial 0 (2/3 finished) - failed - best: trial 1"]


def test_train_longer_after_early_stopping_says_how():
    import io

    from rich.console import Console

    from dlcli import report
    from dlcli.strategy import diagnose
    errors, sizes = {"train": 0.30, "dev": 0.31}, {"train": 5000, "dev": 5000}
    summary = {"errors": errors, "sizes": sizes, "human_level_error": 0.01,
               "diagnosis": diagnose(errors, 0.01, sizes), "stopped_early_at_epoch": 21}
    con = Console(file=io.StringIO(), width=80)
    report.errors_table(summary, con)
    words = " ".join(con.file.getvalue().split())
    assert "Focus: avoidable bias" in words and "Train longer" in words
    assert "Early stopping ended training at epoch 21: to train longer, raise training.early_stopping.patience" in words
