"""Issue 10, faults during `dlcli train`: real signals, a real full file system (a small tmpfs,
mounted where the tests run as root), locks, and what readers make of what is left."""

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

from dlcli import api, faults
from dlcli.cli import app
from dlcli.runs import (DirectoryLock, atomic_write_json, npz_note, read_jsonl, repair_jsonl,
                        run_state)

from test_train import SMALL, only_run, train_cli, write_recipe

runner = CliRunner()
LONG = dict(SMALL, data={"train": {"builtin": "moons", "n": 2000}, "dev": 0.2},
            training={"epochs": 100000, "batch_size": 32})


def start_training(tmp_path, recipe, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dlcli.cli", "train", str(recipe), "--quiet",
                             "--runs-dir", str(tmp_path / "runs"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, what, limit=600):
    """Poll until `predicate()`; the limit only keeps a broken build from hanging CI."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def epochs_logged(tmp_path, n):
    def check():
        runs = list((tmp_path / "runs").glob("*/metrics.jsonl")) if (tmp_path / "runs").exists() else []
        return bool(runs) and len(read_jsonl(runs[0])) >= n
    return check


def retrain(tmp_path, recipe_path, epochs):
    """The same recipe trained for exactly `epochs` epochs, in-process: its params."""
    result = api.train(recipe_path, overrides=[f"training.epochs={epochs}"],
                       runs_dir=tmp_path / "again")
    return result.model.state_dict()


def test_sigterm_is_ctrl_c_and_params_are_at_an_epoch_boundary(tmp_path):
    recipe = write_recipe(tmp_path, LONG)
    proc = start_training(tmp_path, recipe)
    wait_for(epochs_logged(tmp_path, 3), "3 epochs")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    run = only_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    n = summary["epochs"]
    steps = -(-1600 // 32)  # 2000 examples, 400 dev
    assert summary["iterations"] == n * steps
    assert len(read_jsonl(run / "metrics.jsonl")) == n
    saved = dict(np.load(run / "params.npz"))
    expected = retrain(tmp_path, recipe, n)
    for k, v in expected.items():
        np.testing.assert_array_equal(saved[k], v, err_msg=k)


def test_a_signal_during_an_epochs_end_waits_until_its_line_is_written(tmp_path):
    """The CI race behind the test above: SIGTERM between counting an epoch and logging it
    left summary.json one epoch ahead of metrics.jsonl. Delivered here at that very point."""
    from dlcli.train import fit
    recipe = api.as_recipe(write_recipe(tmp_path, SMALL, training__epochs=5))
    model, dataset = api.prepare(recipe)
    lines = []

    def on_epoch(record):
        if record["epoch"] == 2:
            signal.raise_signal(signal.SIGTERM)  # as `kill` would, halfway through the end
        lines.append(record["epoch"])

    with faults.Interrupts():
        result = fit(model, dataset, recipe, on_epoch=on_epoch)
    assert result.status == "interrupted"
    assert result.epochs == 2 and lines == [1, 2]
    saved = {k: v.copy() for k, v in model.state_dict().items()}
    expected = retrain(tmp_path, write_recipe(tmp_path, SMALL, name="again.yaml"), 2)
    for k, v in expected.items():
        np.testing.assert_array_equal(saved[k], v, err_msg=k)


def test_sigkill_keeps_the_last_checkpoint_and_runs_list_says_crashed(tmp_path):
    recipe = write_recipe(tmp_path, dict(LONG, training={**LONG["training"], "checkpoint_every": 2}))
    proc = start_training(tmp_path, recipe)
    wait_for(epochs_logged(tmp_path, 5), "5 epochs")
    run = only_run(tmp_path)
    assert run_state(run)["status"] == "running"
    listing = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), "list"])
    assert "running" in listing.output, listing.output
    proc.kill()
    proc.communicate(timeout=60)
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    epoch = npz_note(run / "params.npz")["epoch"]
    # checkpoint.json is the pair's second rename: a kill between the two leaves it one behind
    assert epoch >= 4 and epoch % 2 == 0 and checkpoint["epoch"] in (epoch, epoch - 2)
    saved = dict(np.load(run / "params.npz"))
    expected = retrain(tmp_path, recipe, epoch)
    for k, v in expected.items():
        np.testing.assert_array_equal(saved[k], v, err_msg=k)
    state = run_state(run)
    assert state["status"] == "crashed" and state["epochs"] >= epoch
    assert state["checkpoint_epoch"] == epoch
    listing = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), "list"])
    assert listing.exit_code == 0 and "crashed" in listing.output, listing.output


class Params:
    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return {"0.W": np.full((2, 3), self.value)}


def test_a_kill_between_the_checkpoints_two_renames_leaves_params_that_name_their_epoch(
        tmp_path, monkeypatch):
    checkpoints = faults.Checkpoints(tmp_path, 2)
    checkpoints.save(Params(2.0), {"epoch": 2, "iteration": 20})
    real, renames = os.replace, []

    def killed_after_the_first(src, dst):
        if renames:
            raise SystemExit(137)
        renames.append(dst)
        real(src, dst)
    monkeypatch.setattr(os, "replace", killed_after_the_first)
    with pytest.raises(SystemExit):
        checkpoints.save(Params(4.0), {"epoch": 4, "iteration": 40})
    monkeypatch.undo()
    assert renames == [tmp_path / "params.npz"]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2
    assert np.load(tmp_path / "params.npz")["0.W"][0, 0] == 4.0
    assert npz_note(tmp_path / "params.npz") == {"epoch": 4, "iteration": 40}
    assert run_state(tmp_path)["checkpoint_epoch"] == 4


def test_npz_note_of_files_without_one(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    (tmp_path / "text.npz").write_text("not a zip")
    for name in ("plain.npz", "text.npz", "missing.npz"):
        assert npz_note(tmp_path / name) is None, name


def test_checkpoint_every_seconds_and_epochs():
    t = [0.0]
    c = faults.Checkpoints(Path("."), "60s", clock=lambda: t[0])
    assert not c.due(1)
    t[0] = 61
    assert c.due(2)
    c = faults.Checkpoints(Path("."), 3)
    assert [c.due(e) for e in (1, 2, 3)] == [False, False, True]
    assert not faults.Checkpoints(Path("."), 0).due(100)


def send_sigint():
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_the_final_evaluation_still_writes_the_summary(tmp_path, monkeypatch):
    real = api.finish

    def finish_with_two_interrupts(*args, **kwargs):
        send_sigint()
        send_sigint()
        return real(*args, **kwargs)
    monkeypatch.setattr(api, "finish", finish_with_two_interrupts)
    result = train_cli(tmp_path, write_recipe(tmp_path))
    assert result.exit_code == 130, result.output
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 5


def test_a_second_ctrl_c_during_the_save_still_writes_the_summary(tmp_path, monkeypatch):
    real_save, real_finish = faults.Checkpoints.maybe_save, api.finish

    def save_then_interrupt(self, model, record):
        real_save(self, model, record)
        if record["epoch"] == 2:
            send_sigint()  # the first Ctrl-C: training stops

    def finish_interrupted_again(*args, **kwargs):
        send_sigint()  # the second, while saving
        return real_finish(*args, **kwargs)
    monkeypatch.setattr(faults.Checkpoints, "maybe_save", save_then_interrupt)
    monkeypatch.setattr(api, "finish", finish_interrupted_again)
    result = train_cli(tmp_path, write_recipe(tmp_path, training={"epochs": 50, "batch_size": 32}))
    assert result.exit_code == 130, result.output
    run = only_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 2
    assert (run / "params.npz").exists() and not (run / "checkpoint.json").exists()
    assert not (run / ".lock").exists()  # a finished run holds only its run files


@pytest.fixture
def tiny_fs(tmp_path):
    """A real, small tmpfs (root only); skipped with the reason where mount is not allowed."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): run as root to test a full disk")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_whole_lines(tmp_path, tiny_fs):
    runs = tiny_fs / "runs"
    runs.mkdir()
    # fill all but a few pages: metrics.jsonl runs out of room mid-training
    filler = tiny_fs / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    # (the run's recipe.yaml, preprocessing.npz and .lock take a page each before metrics.jsonl)
    os.truncate(filler, filler.stat().st_size - 5 * 4096)
    recipe = write_recipe(tmp_path, dict(SMALL, training={"epochs": 400, "batch_size": 32}))
    result = runner.invoke(app, ["train", str(recipe), "--quiet", "--runs-dir", str(runs)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no space" in lines[0] and "Traceback" not in result.output
    (run,) = runs.iterdir()
    assert str(run) in lines[0]
    text = (run / "metrics.jsonl").read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line whole
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    shown = runner.invoke(app, ["runs", "show", str(run)])
    assert shown.exit_code == 0, shown.output


def test_readers_skip_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "cost": 0.5}\n{"epoch": 2, "co')
    assert read_jsonl(path) == [{"epoch": 1, "cost": 0.5}]
    repair_jsonl(path)
    assert path.read_text() == '{"epoch": 1, "cost": 0.5}\n'


def test_stray_temporaries_are_cleaned_on_the_next_write(tmp_path):
    stray = tmp_path / ".summary.json.abc123.tmp"
    stray.write_text("half")
    atomic_write_json(tmp_path / "summary.json", {"a": 1})
    assert not stray.exists() and json.loads((tmp_path / "summary.json").read_text()) == {"a": 1}


def test_a_run_directory_has_one_writer(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with DirectoryLock(run_dir):
        with pytest.raises(api.BadInput, match=f"pid {os.getpid()}"):
            api.train(write_recipe(tmp_path), run_dir=run_dir)
    api.train(write_recipe(tmp_path), run_dir=run_dir)  # released


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_a_bad_runs_dir_is_exit_2_with_one_line(tmp_path, kind, tiny_fs):
    if kind == "file":
        runs = tmp_path / "a-file"
        runs.write_text("")
    else:
        runs = tiny_fs
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    for args in (["train", str(write_recipe(tmp_path)), "--quiet", "--runs-dir", str(runs)],
                 ["runs", "--runs-dir", str(runs), "list"]):
        result = runner.invoke(app, args)
        if kind == "read-only" and args[0] == "runs":
            continue  # listing a read-only folder is fine
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and str(runs) in lines[0], result.output


def test_runs_list_of_a_missing_folder_says_so(tmp_path, monkeypatch):
    result = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "nope"), "list"])
    assert result.exit_code == 2 and "no such runs directory" in result.output
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLCLI_RUNS", raising=False)
    result = runner.invoke(app, ["runs", "list"])
    assert result.exit_code == 0 and "does not exist" in result.output
