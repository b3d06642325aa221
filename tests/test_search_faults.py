"""Issue 10, faults during `dlcli search`: workers killed by real signals, a Dask cluster on
127.0.0.1 that loses its workers, two drivers on one directory, a torn trials.jsonl, a driver
killed under its workers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli import search as s
from dlcli.cli import app
from dlcli.recipe import load_recipe
from dlcli.runs import DirectoryLock, read_jsonl

from test_search import TINY, dask_cluster, free_port, trial_lines  # noqa: F401  (a fixture)

runner = CliRunner()


def slow_recipe(tmp_path, trials=4, epochs=150, n=600, **search):
    recipe = json.loads(json.dumps(TINY))
    recipe["data"]["train"]["n"] = n
    recipe["training"]["epochs"] = epochs
    recipe["search"].update(trials=trials, **search)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def wait_for(predicate, what, limit=600):
    """Poll until `predicate()`; the limit only keeps a broken build from hanging CI."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


class Killer:
    """A display that SIGKILLs a local worker while a trial runs, `times` times."""

    def __init__(self, executor, times):
        self.executor, self.times, self.kills = executor, times, 0

    def update(self, result, running):
        if running and self.kills < self.times:
            processes = list(self.executor.executor._processes.values())
            if processes:
                os.kill(processes[0].pid, signal.SIGKILL)
                self.kills += 1


def test_a_killed_worker_loses_no_trial(tmp_path):
    recipe = load_recipe(slow_recipe(tmp_path))
    with s.open_executor(2) as executor:
        killer = Killer(executor, 1)
        result = s.search(recipe, executor=executor, runs_dir=tmp_path / "runs", display=killer)
    assert killer.kills == 1
    lines = trial_lines(result.directory)
    assert [r["trial"] for r in lines] == [0, 1, 2, 3]
    assert all(r["status"] == "completed" for r in lines), lines
    assert not result.lost


def test_trials_lost_after_retries_exit_1_and_resume_reruns_them(tmp_path):
    path = slow_recipe(tmp_path, trials=2, rounds=2, keep=1.0)
    recipe = load_recipe(path)
    with s.open_executor(1) as executor:
        killer = Killer(executor, 10**6)  # every attempt dies
        result = s.search(recipe, executor=executor, runs_dir=tmp_path / "runs", display=killer)
    # one kill breaks the pool: both queued trials are lost together, each attempt
    assert sorted(result.lost) == [0, 1] and killer.kills == s.MAX_ATTEMPTS
    lines = read_jsonl(result.directory / "trials.jsonl")
    assert {r["status"] for r in lines} == {"lost"}
    # the CLI's answer to such a search: exit 1, saying how to finish it
    resumed = runner.invoke(app, ["search", str(path), "--resume", str(result.directory),
                                  "--workers", "1", "--json"])
    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    assert [t["status"] for t in doc["trials"]] == ["completed"] * 4  # both rounds now
    assert doc["best"] is not None


def test_the_cli_exits_1_when_trials_are_lost(tmp_path, monkeypatch):
    real = s.run_batch

    def losing(batch, result, recipe, executor, display):
        real(batch, result, recipe, executor, Killer(executor, 10**6))
    monkeypatch.setattr(s, "run_batch", losing)
    result = runner.invoke(app, ["search", str(slow_recipe(tmp_path, trials=1)), "--workers", "1",
                                 "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 1, result.output
    assert "could not finish" in result.output and "--resume" in result.output


def test_a_torn_trials_line_is_redone_on_resume(tmp_path):
    path = slow_recipe(tmp_path, trials=3, epochs=3, n=200)
    result = runner.invoke(app, ["search", str(path), "--workers", "1", "--json",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    directory = Path(json.loads(result.stdout)["search"])
    trials = directory / "trials.jsonl"
    text = trials.read_text()
    trials.write_text(text[:len(text) - 40])  # the last line cut mid-write
    resumed = runner.invoke(app, ["search", str(path), "--resume", str(directory), "--workers", "1",
                                  "--json"])
    assert resumed.exit_code == 0, resumed.output
    lines = [json.loads(line) for line in trials.read_text().splitlines()]  # every line whole
    assert sorted(r["trial"] for r in lines) == [0, 1, 2]


def test_two_drivers_on_one_search_directory(tmp_path):
    path = slow_recipe(tmp_path, trials=1, epochs=2, n=200)
    result = runner.invoke(app, ["search", str(path), "--workers", "1", "--json",
                                 "--runs-dir", str(tmp_path / "runs")])
    directory = Path(json.loads(result.stdout)["search"])
    with DirectoryLock(directory, "search directory"):
        second = runner.invoke(app, ["search", str(path), "--resume", str(directory)])
    assert second.exit_code == 2, second.output
    line, = second.output.strip().splitlines()
    assert f"pid {os.getpid()}" in line and str(directory) in line


def children_of(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_driver_dies(tmp_path, sig):
    path = slow_recipe(tmp_path, trials=4, epochs=100000, n=600)
    driver = subprocess.Popen([sys.executable, "-m", "dlcli.cli", "search", str(path), "--workers",
                               "2", "--json", "--runs-dir", str(tmp_path / "runs")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = []

    def two_workers_training():
        workers[:] = [p for p in children_of(driver.pid)
                      if "spawn" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        return len(workers) == 2 and len(list((tmp_path / "runs").glob("*/trials/*/metrics.jsonl"))) >= 2
    wait_for(two_workers_training, "two workers training")
    driver.send_signal(sig)
    _, err = driver.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert driver.returncode == 130 and "--resume" in err, err  # SIGTERM is Ctrl-C
    wait_for(lambda: not any(alive(p) for p in workers), "the workers to exit")


@pytest.mark.cluster
def test_a_scheduler_without_workers_says_so_and_exits_1(tmp_path):
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                  address.rsplit(":", 1)[1], "--no-dashboard"], cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client
        wait_for(lambda: _reachable(Client, address), "the scheduler")
        result = runner.invoke(app, ["search", str(slow_recipe(tmp_path)), "--scheduler", address,
                                     "--worker-timeout", "2", "--runs-dir", str(tmp_path / "runs")])
        assert result.exit_code == 1, result.output
        assert "waiting up to 2 s" in result.output and "no Dask worker" in result.output
        assert "Traceback" not in result.output
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)


def _reachable(Client, address):
    try:
        with Client(address, timeout="2s"):
            return True
    except OSError:
        return False


@pytest.mark.cluster
def test_a_search_whose_last_worker_dies_exits_1(tmp_path, dask_cluster):
    from distributed import Client
    path = slow_recipe(tmp_path, trials=4, epochs=100000)
    proc = subprocess.Popen([sys.executable, "-m", "dlcli.cli", "search", str(path), "--scheduler",
                             dask_cluster, "--worker-timeout", "3", "--json",
                             "--runs-dir", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list((tmp_path / "runs").glob("*/trials/*/metrics.jsonl"))) >= 2,
                 "two trials training")
        with Client(dask_cluster, timeout="10s") as client:
            client.retire_workers(list(client.scheduler_info()["workers"]), close_workers=True)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "no Dask worker is connected" in err and "--resume" in err
    assert "Traceback" not in err


@pytest.mark.cluster
def test_an_unreachable_scheduler_says_what_it_waits_for(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = runner.invoke(app, ["search", str(slow_recipe(tmp_path)), "--scheduler", address,
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == f"dlcli: connecting to the Dask scheduler at {address} (up to 10 s)"
    assert len(lines) == 2 and "cannot reach" in lines[1]


def test_a_full_disk_under_a_search_is_exit_1_without_a_traceback(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): run as root")
    try:
        path = slow_recipe(tmp_path, trials=4, epochs=300, n=200)
        result = runner.invoke(app, ["search", str(path), "--workers", "1", "--json",
                                     "--runs-dir", str(mnt / "runs")])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "no space" in result.output or "could not finish" in result.output, result.output
        # trials lost to the full disk, or the driver's own write refused: either way one
        # line on stderr (stdout may hold the --json document) naming the --resume command
        assert "--resume" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        trials = list(mnt.glob("runs/*/trials.jsonl"))
        if trials:  # whatever was recorded is whole lines, and lost trials are not results
            for line in trials[0].read_text().splitlines():
                record = json.loads(line)
                assert record["status"] in ("completed", "lost"), record
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
