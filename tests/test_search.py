"""dlcli search: the sampling laws, coarse to fine, failures, resume, the CLI's output, and the
same trials on one worker, two workers and a Dask cluster."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli import search as s
from dlcli.cli import app
from dlcli.recipe import load_recipe
from dlcli.rng import stream
from dlcli.runs import read_jsonl

runner = CliRunner()

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"train": {"builtin": "moons", "n": 200}, "dev": 0.25},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                         {"type": "dense", "units": 1, "activation": "sigmoid"}]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 3, "batch_size": 32},
    "search": {"trials": 4, "space": {
        "optimizer.learning_rate": {"log_uniform": [1.0e-3, 0.3]},
        "optimizer.beta1": {"one_minus_log_uniform": [0.8, 0.99]},
        "model.layers.0.units": {"int_uniform": [2, 16]},
        "training.batch_size": {"choice": [16, 32, 64]}}},
}


def write_recipe(tmp_path, **search):
    recipe = json.loads(json.dumps(TINY))
    recipe["search"].update(search)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def draws(law, bounds, n=4000):
    return [v["k"] for v in s.sample([s.Dim("k", law, tuple(bounds))], stream(0, "search"), n)]


def run_search(tmp_path, executor, **kw):
    recipe = load_recipe(kw.pop("recipe", None) or write_recipe(tmp_path))
    return s.search(recipe, executor=executor, runs_dir=tmp_path / "runs", **kw)


def trial_lines(directory):
    return sorted(read_jsonl(Path(directory) / "trials.jsonl"), key=lambda r: r["trial"])


# -- the laws ----------------------------------------------------------------------------------
def test_log_uniform_puts_a_quarter_in_each_decade():
    values = draws("log_uniform", [1e-4, 1.0])
    assert all(1e-4 <= v <= 1.0 for v in values)
    decades = Counter(math.floor(math.log10(v)) for v in values)
    assert sorted(decades) == [-4, -3, -2, -1]
    for count in decades.values():
        assert abs(count / len(values) - 0.25) <= 0.03


def test_one_minus_log_uniform_puts_half_below_0_99():
    values = draws("one_minus_log_uniform", [0.9, 0.999])
    assert all(0.9 <= v <= 0.999 for v in values)
    below = sum(v < 0.99 for v in values) / len(values)
    assert abs(below - 0.5) <= 0.03


def test_uniform_and_choice():
    values = draws("uniform", [-1.0, 3.0])
    assert all(-1.0 <= v <= 3.0 for v in values)
    assert abs(sum(v < 1.0 for v in values) / len(values) - 0.5) <= 0.03
    picks = Counter(draws("choice", ["a", "b", "c"], 3000))
    assert set(picks) == {"a", "b", "c"} and min(picks.values()) > 900


@pytest.mark.parametrize("law", ["int_uniform", "log_int_uniform"])
def test_int_bounds_are_inclusive(law):
    values = draws(law, [1, 4])
    assert all(isinstance(v, int) for v in values)
    assert set(values) == {1, 2, 3, 4}


def test_log_int_uniform_is_log_scaled():
    values = draws("log_int_uniform", [10, 1000])
    assert all(10 <= v <= 1000 for v in values)
    assert abs(sum(v < 100 for v in values) / len(values) - 0.5) <= 0.03


# -- coarse to fine and ranking ---------------------------------------------------------------
SETTINGS = s.Settings(trials=8, rounds=2, keep=0.25, space={}, metric="error")


def rec(trial, metric, lr, beta, units, choice, status="completed", met=True):
    return {"trial": trial, "status": status, "metric": metric, "satisficing_met": met,
            "values": {"lr": lr, "beta": beta, "units": units, "c": choice}}


DIMS = [s.Dim("lr", "log_uniform", (1e-4, 1.0)),
        s.Dim("beta", "one_minus_log_uniform", (0.9, 0.999)),
        s.Dim("units", "int_uniform", (1, 100)), s.Dim("c", "choice", ("a", "b", "c"))]


def test_coarse_to_fine_shrinks_every_range_around_the_best():
    records = [rec(0, 0.10, 1e-2, 0.95, 40, "a"), rec(1, 0.12, 3e-2, 0.99, 60, "b"),
               rec(2, 0.40, 1e-4, 0.90, 2, "c"), rec(3, 0.45, 0.9, 0.998, 99, "c"),
               rec(4, 0.30, 1e-3, 0.92, 10, "c"), rec(5, 0.35, 0.5, 0.997, 90, "c"),
               rec(6, None, 1e-4, 0.91, 1, "c", status="diverged"),
               rec(7, 0.01, 0.7, 0.999, 100, "c", status="completed", met=False)]
    lr, beta, units, choice = s.narrow(DIMS, records, SETTINGS)
    assert lr.bounds == (1e-2, 3e-2) and beta.bounds == (0.95, 0.99)
    assert units.bounds == (40, 60) and choice.bounds == ("a", "b")
    draws_ = s.sample([lr, beta, units, choice], stream(1, "search"), 500)
    logs = [math.log10(v["lr"]) for v in draws_]
    assert all(-2 <= x <= math.log10(3e-2) for x in logs)
    # log-uniform inside the narrowed range: half below its log midpoint
    mid = (-2 + math.log10(3e-2)) / 2
    assert 0.4 < sum(x < mid for x in logs) / len(logs) < 0.6
    assert all(isinstance(v["units"], int) and 40 <= v["units"] <= 60 for v in draws_)
    assert {v["c"] for v in draws_} == {"a", "b"}


def test_satisficing_filters_and_f1_ranks_higher_first():
    records = [rec(0, 0.05, 1, 1, 1, "a", met=False), rec(1, 0.2, 1, 1, 1, "a"),
               rec(2, 0.1, 1, 1, 1, "a")]
    assert s.best_of(records, SETTINGS)["trial"] == 2
    f1 = s.Settings(8, 1, 0.25, {}, "f1")
    assert s.best_of(records, f1)["trial"] == 1
    assert s.best_of(records[:1], SETTINGS) is None


def test_the_live_table_keeps_the_best_the_running_and_the_latest():
    trials = [s.Trial(n, 0, n, {}, {}) for n in range(20)]
    records = {n: {"trial": n, "status": "completed", "metric": m}
               for n, m in ((3, 0.1), (0, 0.3), (5, 0.2), (1, 0.4), (25, 0.0))}  # finishing order
    result = s.SearchResult(Path("d"), trials, records, SETTINGS, [], best=records[3])
    shown = [t.number for t in s.live_rows(result, {7, 8}, room=5)]
    assert shown == [1, 3, 5, 7, 8]
    assert len(s.live_rows(result, {7, 8}, room=20)) == 20


# -- searches through an executor --------------------------------------------------------------
def test_sampling_does_not_depend_on_workers(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path))
    a = s.preview(recipe, trials=6)
    b = s.preview(recipe, trials=6)
    assert [t.values for t in a.trials] == [t.values for t in b.trials]
    assert [t.seed for t in a.trials] == [3, 4, 5, 6, 7, 8]
    assert len({t.values["optimizer.learning_rate"] for t in a.trials}) == 6
    # a longer search starts with the same trials
    longer = s.preview(recipe, trials=8).trials
    assert [t.values for t in longer][:6] == [t.values for t in a.trials]


def test_one_and_two_workers_give_the_same_trials(tmp_path):
    lines = []
    for workers in (1, 2):
        with s.open_executor(workers) as executor:
            result = run_search(tmp_path, executor, trials=4)
        lines.append([(r["trial"], r["values"], r["metric"], r["status"])
                      for r in trial_lines(result.directory)])
    assert lines[0] == lines[1]
    assert all(status == "completed" for *_, status in lines[0])


def test_two_local_workers_run_one_thread_each(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with s.open_executor(2) as executor:
        seen = [executor.submit(os.getenv, k).result() for k in s.THREAD_VARIABLES]
    assert seen == ["1"] * len(s.THREAD_VARIABLES)
    assert "NUMBA_NUM_THREADS" not in os.environ and os.environ["OMP_NUM_THREADS"] == "3"


def test_coarse_to_fine_search_writes_its_files(tmp_path):
    with ThreadPoolExecutor(1) as executor:
        result = run_search(tmp_path, executor, trials=4, rounds=2, keep=0.5)
    d = result.directory
    assert d.parent == tmp_path / "runs" and d.name.endswith("-tiny-search")
    lines = trial_lines(d)
    assert [r["trial"] for r in lines] == list(range(8))
    assert [r["round"] for r in lines] == [0] * 4 + [1] * 4
    assert [r["seed"] for r in lines] == list(range(3, 11))
    for r in lines:
        assert set(r) >= {"trial", "round", "seed", "values", "metric", "errors", "seconds",
                          "status"}
        assert (d / "trials" / str(r["trial"]) / "summary.json").exists()
    top = sorted(lines[:4], key=lambda r: r["metric"])[:2]
    for key in ("optimizer.learning_rate", "optimizer.beta1", "model.layers.0.units"):
        lo, hi = min(r["values"][key] for r in top), max(r["values"][key] for r in top)
        assert all(lo <= r["values"][key] <= hi for r in lines[4:])
    best = min(lines, key=lambda r: r["metric"])
    assert result.best["trial"] == best["trial"]
    best_recipe = load_recipe(d / "best.yaml").to_dict()
    assert best_recipe["seed"] == best["seed"]
    assert best_recipe["optimizer"]["learning_rate"] == best["values"]["optimizer.learning_rate"]
    assert best_recipe["model"]["layers"][0]["units"] == best["values"]["model.layers.0.units"]
    saved = load_recipe(d / "search.yaml").to_dict()["search"]
    assert (saved["trials"], saved["rounds"], saved["keep"]) == (4, 2, 0.5)


def test_the_best_trial_meets_the_satisficing_metrics(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, space={
        "model.layers.0.units": {"choice": [2, 16]},
        "optimizer.learning_rate": {"log_uniform": [1e-3, 0.3]}}),
        overrides=["evaluation.satisficing={parameters: {max: 20}}"])
    with ThreadPoolExecutor(1) as executor:
        result = s.search(recipe, trials=6, executor=executor, runs_dir=tmp_path / "runs")
    lines = trial_lines(result.directory)
    assert {r["values"]["model.layers.0.units"] for r in lines} == {2, 16}
    for r in lines:  # 2 units: 9 parameters; 16 units: 65
        assert r["satisficing_met"] == (r["values"]["model.layers.0.units"] == 2)
    small = [r for r in lines if r["satisficing_met"]]
    assert result.best["trial"] == min(small, key=lambda r: (r["metric"], r["trial"]))["trial"]
    assert load_recipe(result.directory / "best.yaml").model.layers[0].units == 2


@pytest.mark.parametrize("metric", ["f1", "cost"])
def test_f1_ranks_highest_first_and_cost_is_the_final_cost(tmp_path, metric):
    recipe = load_recipe(write_recipe(tmp_path), overrides=[f"evaluation.metric={metric}"])
    with ThreadPoolExecutor(1) as executor:
        result = s.search(recipe, trials=3, executor=executor, runs_dir=tmp_path / "runs")
    lines = trial_lines(result.directory)
    for r in lines:
        run = result.directory / "trials" / str(r["trial"])
        if metric == "f1":
            summary = json.loads((run / "summary.json").read_text())
            assert r["metric"] == summary["metrics"]["dev"]["f1"]
        else:
            assert r["metric"] == read_jsonl(run / "metrics.jsonl")[-1]["cost"]
    pick = max if metric == "f1" else min
    assert result.best["metric"] == pick(r["metric"] for r in lines)


def test_a_failing_trial_does_not_stop_the_search(tmp_path, monkeypatch):
    real = s.run_trial

    def flaky(recipe_dict, trial_dir):
        if trial_dir.endswith("/1"):
            raise RuntimeError("worker lost\nsecond line")
        return real(recipe_dict, trial_dir)

    monkeypatch.setattr(s, "run_trial", flaky)
    with ThreadPoolExecutor(1) as executor:
        result = run_search(tmp_path, executor, trials=3)
    lines = trial_lines(result.directory)
    assert [r["status"] for r in lines] == ["completed", "failed", "completed"]
    assert lines[1]["error"] == "RuntimeError: worker lost second line"
    assert lines[1]["metric"] is None


def test_a_trial_whose_data_is_missing_fails_alone(tmp_path):
    recipe = write_recipe(tmp_path, space={"data.train": {"choice": [
        {"builtin": "moons", "n": 200}, {"path": "missing.npz"}]}})
    result = runner.invoke(app, ["search", str(recipe), "--json", "--trials", "4", "--workers", "1",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    statuses = {t["values"]["data.train"].get("path", "builtin"): t["status"]
                for t in doc["trials"]}
    assert statuses == {"builtin": "completed", "missing.npz": "failed"}
    failures = [r for r in trial_lines(doc["search"]) if r["status"] == "failed"]
    assert all("missing.npz" in r["error"] and "\n" not in r["error"] for r in failures)


def test_resume_runs_only_the_missing_trials(tmp_path, monkeypatch):
    with ThreadPoolExecutor(1) as executor:
        full = run_search(tmp_path, executor, trials=4)
    lines = trial_lines(full.directory)
    # as if interrupted after trials 0 and 2
    (full.directory / "trials.jsonl").write_text(
        "".join(json.dumps(lines[i]) + "\n" for i in (0, 2)))
    (full.directory / "best.yaml").unlink()
    ran = []
    real = s.run_trial
    monkeypatch.setattr(s, "run_trial",
                        lambda d, trial_dir: ran.append(trial_dir) or real(d, trial_dir))
    recipe = load_recipe(tmp_path / "recipe.yaml")
    with ThreadPoolExecutor(1) as executor:
        resumed = s.search(recipe, executor=executor, resume=full.directory)
    assert [Path(p).name for p in ran] == ["1", "3"]
    again = trial_lines(full.directory)
    assert [(r["trial"], r["values"], r["metric"]) for r in again] == \
           [(r["trial"], r["values"], r["metric"]) for r in lines]
    assert (full.directory / "best.yaml").exists() and resumed.best["trial"] == full.best["trial"]
    # a resumed search keeps its settings
    changed = runner.invoke(app, ["search", str(tmp_path / "recipe.yaml"), "--resume",
                                  str(full.directory), "--trials", "9"])
    assert changed.exit_code == 2 and "--trials" in changed.output


def test_ctrl_c_keeps_the_finished_trials_and_says_how_to_resume(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dlcli.cli", "search",
                             str(write_recipe(tmp_path)), "--json", "--workers", "2",
                             "--runs-dir", str(runs), "--set", "training.epochs=2000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group, as a terminal's Ctrl-C
    try:
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/trials.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert f"--resume {doc['search']}" in err
    finished = [t["trial"] for t in doc["trials"] if t["status"] != "sampled"]
    assert 1 <= len(finished) < 4
    assert sorted(finished) == [r["trial"] for r in trial_lines(doc["search"])]


# -- the command line --------------------------------------------------------------------------
def test_dry_run_json_samples_without_training(tmp_path):
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)), "--dry-run", "--json",
                                 "--trials", "5", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["search"] is None and doc["best"] is None
    assert [t["trial"] for t in doc["trials"]] == [0, 1, 2, 3, 4]
    for t in doc["trials"]:
        assert t["status"] == "sampled" and t["metric"] is None and t["round"] == 0
        assert set(t["values"]) == set(TINY["search"]["space"])
        assert 1e-3 <= t["values"]["optimizer.learning_rate"] <= 0.3
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_configurations(tmp_path):
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "log_uniform [0.001, 0.3]" in result.output and "sampled" in result.output


def test_search_json_document(tmp_path):
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)), "--json", "--trials", "2",
                                 "--workers", "1", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert Path(doc["search"]).is_dir()
    assert [t["status"] for t in doc["trials"]] == ["completed", "completed"]
    for t in doc["trials"]:
        assert set(t) == {"trial", "round", "seed", "values", "metric", "errors", "status",
                          "seconds"}
        assert t["metric"] == t["errors"]["dev"]
    best = min(doc["trials"], key=lambda t: t["metric"])
    assert doc["best"] == {"trial": best["trial"], "values": best["values"],
                           "metric": best["metric"]}


def test_human_output_has_the_table_and_the_scatter(tmp_path):
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)), "--trials", "3",
                                 "--workers", "1", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "best first" in result.output
    assert "error against optimizer.learning_rate (log scale)" in result.output
    assert "error against model.layers.0.units\n" in result.output


def test_every_trial_diverging_exits_1(tmp_path):
    recipe = write_recipe(tmp_path,
                          space={"optimizer.learning_rate": {"log_uniform": [1e11, 1e12]}})
    data = yaml.safe_load(recipe.read_text())
    data["optimizer"]["name"] = "gd"
    recipe.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["search", str(recipe), "--json", "--trials", "2", "--workers", "1",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [t["status"] for t in doc["trials"]] == ["diverged", "diverged"]
    assert doc["best"] is None


def test_a_space_value_that_breaks_the_recipe_is_bad_input(tmp_path):
    recipe = write_recipe(tmp_path, space={"optimizer.name": {"choice": ["adam", "nonsense"]}})
    result = runner.invoke(app, ["search", str(recipe), "--dry-run", "--trials", "6"])
    assert result.exit_code == 2
    assert "search.space.optimizer.name" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["--keep", "1.5"], "--keep: must be a fraction in (0, 1], got 1.5"),
    (["--set", "search.space={}"], "search.space: nothing to search"),
])
def test_bad_search_settings_exit_2(tmp_path, args, needle):
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)), "--dry-run", *args])
    assert result.exit_code == 2 and needle in result.output, result.output


def test_scheduler_without_distributed_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)),
                                 "--scheduler", "tcp://127.0.0.1:1",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "pip install 'dlcli[cluster]'" in result.output


# -- a real Dask cluster -----------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two one-thread workers on 127.0.0.1, always torn down."""
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, **{k: "1" for k in s.THREAD_VARIABLES}}
    procs = []

    def start(*args):
        procs.append(subprocess.Popen([dask, *args], cwd=tmp_path, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
              "--no-dashboard")
        for _ in range(2):
            start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard")
        from distributed import Client
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        # workers first, while their scheduler is there to say goodbye to
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.cluster
def test_a_dask_cluster_gives_the_same_trials_as_the_local_pool(tmp_path, dask_cluster):
    result = runner.invoke(app, ["search", str(write_recipe(tmp_path)), "--scheduler", dask_cluster,
                                 "--json", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    remote = json.loads(result.stdout)["search"]
    with s.open_executor(1) as executor:
        local = run_search(tmp_path, executor).directory
    pick = [(r["trial"], r["seed"], r["values"], r["metric"], r["errors"], r["status"])
            for r in trial_lines(remote)]
    assert pick == [(r["trial"], r["seed"], r["values"], r["metric"], r["errors"], r["status"])
                    for r in trial_lines(local)]
    assert len(pick) == 4 and all(p[-1] == "completed" for p in pick)
