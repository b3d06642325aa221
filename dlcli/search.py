"""`dlcli search`: the notes' tuning process as a command.

Random values, not a grid; each on its own scale (a learning rate log-uniformly, a momentum
beta as 1 - 10^r); coarse to fine over rounds; many models in parallel (caviar) through one
`concurrent.futures.Executor`, a local process pool or a Dask cluster.

Every configuration is drawn in the driver from the recipe seed, one uniform number per
searched key, so a search is the same whatever the number or kind of workers. Trial i
(numbered from 0 across rounds) trains with seed `recipe seed + i` into
`<search dir>/trials/<i>/`, an ordinary run directory.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput, DlcliError
# the executors moved to their own module; these names stay importable from here
from .executors import (THREAD_VARIABLES, WorkerWatch, dask_executor,  # noqa: F401
                        is_infrastructure, open_executor, single_threaded_children, stop_workers)
# the space, its draws and the ranking live in search_space.py; importable from here too
from .search_space import (LOG_LAWS, Dim, Settings, Trial, _fmt, best_of, dims_of,  # noqa: F401
                           narrow, ranked, round_generators, sample)
from .runs import (DirectoryLock, append_jsonl, atomic_write_text, default_runs_dir, new_run_dir,
                   read_jsonl, repair_jsonl)

FINISHED = ("completed", "diverged", "failed")  # results; `lost` trials are rerun by --resume
MAX_ATTEMPTS = 3  # a trial lost to its infrastructure is tried this often, then marked lost


def make_trials(recipe, dims: list[Dim], rng, round_: int, settings: Settings) -> list[Trial]:
    """The round's trials, each recipe validated: a space value that makes the recipe
    invalid is bad input naming search.space.<key>."""
    from .recipe import recipe_from_dict
    trials = []
    for j, values in enumerate(sample(dims, rng, settings.trials)):
        number = round_ * settings.trials + j
        d = trial_dict(recipe, recipe.seed + number, values)
        try:
            trial_recipe = recipe_from_dict(d, source=recipe.source)
        except BadInput as err:
            key = _space_key(err.key, values)
            raise recipe.error(f"search.space.{key}",
                               f"the sampled value {_fmt(values[key])} makes the recipe invalid: "
                               f"{err.message}")
        trials.append(Trial(number, round_, recipe.seed + number, values, trial_recipe.to_dict()))
    return trials


def _space_key(error_key, values: dict) -> str:
    """The searched key a recipe error is about (the first one when it can't tell)."""
    for key in values:
        if error_key and (error_key == key or error_key.startswith(key + ".")
                          or key.startswith(error_key + ".")):
            return key
    return next(iter(values))


# -- one trial, in a worker -------------------------------------------------------------------
def run_trial(recipe_dict: dict, trial_dir: str) -> dict:
    """Train one configuration into `trial_dir` and return its outcome (JSON-able).

    Runs in a worker process (or a Dask worker): it takes and returns plain data only.
    """
    from .api import train
    from .recipe import recipe_from_dict
    started = time.perf_counter()
    try:
        # A worker shares the driver's stdout, which --json keeps for its one document.
        with contextlib.redirect_stdout(sys.stderr):
            result = train(recipe_from_dict(recipe_dict), run_dir=trial_dir, quiet=True)
    except Exception as err:  # a trial that raises is a failed trial, not a failed search
        out = failed(err, time.perf_counter() - started)
        if is_infrastructure(err) or is_infrastructure(err.__cause__ or err):
            out["status"] = "lost"  # a full disk is not the trial's result: retry it
        return out
    return outcome(recipe_dict["evaluation"], result.summary, Path(trial_dir))


def failed(err: BaseException, seconds) -> dict:
    """A failed trial's record; its error on one line (bad input says where, a bug says what)."""
    message = str(err) if isinstance(err, DlcliError) else f"{type(err).__name__}: {err}"
    message = " ".join(message.split()).removesuffix(":")
    return {"status": "failed", "metric": None, "errors": None,
            "seconds": None if seconds is None else round(seconds, 3), "error": message}


def outcome(evaluation: dict, summary: dict, run_dir: Path) -> dict:
    status = summary["status"]
    metric = metric_of(evaluation["metric"], summary, run_dir) if status == "completed" else None
    return {"status": status, "metric": metric,
            "errors": summary["errors"], "seconds": summary.get("seconds"),
            "satisficing_met": meets(evaluation.get("satisficing") or {}, summary)}


def metric_of(name: str, summary: dict, run_dir: Path):
    """The optimizing metric: the dev error (train without a dev set), the dev F1, or the
    final cost."""
    split = "dev" if summary["errors"].get("dev") is not None else "train"
    if name == "error":
        return summary["errors"][split]
    if name == "f1":
        return f1_of(summary, run_dir, split)
    lines = read_jsonl(run_dir / "metrics.jsonl")
    return lines[-1]["cost"] if lines else None


def f1_of(summary: dict, run_dir: Path, split: str):
    """The split's F1: the positive class's for two classes, the macro F1 (the unweighted mean
    over classes, scikit-learn's average='macro') for more, from the run's predictions."""
    import numpy as np
    from .metrics import macro_average, per_class
    path = run_dir / "predictions" / f"{split}.npz"
    if not path.exists():
        return (summary.get("metrics") or {}).get(split, {}).get("f1")
    with np.load(path) as f:
        probabilities, y_true, y_pred = f["probabilities"], f["y_true"], f["y_pred"]
    classes = probabilities.shape[1] if probabilities.ndim == 2 else 1
    if classes <= 2 or y_true.ndim != 1:
        return (summary.get("metrics") or {}).get(split, {}).get("f1")
    return macro_average(per_class(y_true, y_pred, np.arange(classes)))["f1"]


def meets(satisficing: dict, summary: dict) -> bool:
    checked = summary.get("satisficing") or {}
    for name, bound in satisficing.items():
        if name in checked:
            ok = checked[name]["met"]
        else:
            value = summary.get(name)
            ok = value is not None and all(value <= v if k == "max" else value >= v
                                           for k, v in bound.items() if v is not None)
        if not ok:
            return False
    return True


# -- running a search -------------------------------------------------------------------------
@dataclass
class SearchResult:
    directory: Path | None
    trials: list[Trial]
    records: dict  # trial number -> trials.jsonl record
    settings: Settings
    dims: list[Dim]  # the first round's space
    best: dict | None = None
    interrupted: bool = False
    lost: list = field(default_factory=list)  # trial numbers lost to the infrastructure
    stalled: str | None = None  # why the search stopped waiting (no worker for too long)
    worker_timeout: float = 60.0
    notify: object = None


def settings_of(recipe, trials=None, rounds=None, keep=None) -> Settings:
    search = recipe.to_dict().get("search") or {}
    space = search.get("space") or {}
    if not space:
        raise recipe.error("search.space", "nothing to search: add a search.space section")
    settings = Settings(trials or search.get("trials") or 20, rounds or search.get("rounds") or 1,
                        search.get("keep", 0.25) if keep is None else keep, space,
                        recipe.evaluation.metric)
    if not 0 < settings.keep <= 1:
        raise BadInput(f"must be a fraction in (0, 1], got {settings.keep}", key="--keep")
    return settings


def search(recipe, *, trials=None, rounds=None, keep=None, executor, runs_dir=None,
           resume=None, display=None, worker_timeout=60.0, notify=None) -> SearchResult:
    """Run (or with `resume`, finish) a search through `executor`; the Python API under
    `dlcli search`. A resumed search reads its recipe and settings back from its search.yaml
    (`recipe` is not used). `display` gets `update(result, running)` as trials progress."""
    directory = Path(resume) if resume is not None else None
    if directory is not None:
        recipe = resumed_recipe(directory, trials, rounds, keep)
        settings = settings_of(recipe)
    else:
        settings = settings_of(recipe, trials, rounds, keep)
        directory = new_run_dir(default_runs_dir(runs_dir), f"{recipe.name}-search")
    # one driver per search directory: two at once would train the same trials into the
    # same trial directories and interleave trials.jsonl
    with DirectoryLock(directory, "search directory"), disk_full_resumable(directory):
        if resume is not None:
            repair_jsonl(directory / "trials.jsonl")  # a crash mid-write: redo that trial
            records = {}
            if (directory / "trials.jsonl").exists():
                for r in read_jsonl(directory / "trials.jsonl"):
                    if is_result(r):
                        records[r["trial"]] = r
                    else:
                        records.pop(r["trial"], None)
        else:
            atomic_write_text(directory / "search.yaml", search_yaml(recipe, settings))
            records = {}
        dims = dims_of(settings.space)
        result = SearchResult(directory, [], records, settings, dims)
        result.worker_timeout, result.notify = worker_timeout, notify
        write_best(result, recipe)
        for round_, rng in enumerate(round_generators(recipe.seed, settings.rounds)):
            if round_:
                dims = narrow(dims, list(records.values()), settings)
            batch = make_trials(recipe, dims, rng, round_, settings)
            result.trials.extend(batch)
            run_batch([t for t in batch if t.number not in records], result, recipe, executor,
                      display)
            if result.interrupted or result.lost:
                break  # a later round narrows around results this one did not get
    return result


@contextlib.contextmanager
def disk_full_resumable(directory: Path):
    """A full disk under the driver: one line (exit 1) saying what is kept and how to go on."""
    from .runs import NO_SPACE, DiskFull
    try:
        yield
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        kept = len(read_jsonl(directory / "trials.jsonl")) if (directory / "trials.jsonl").exists() else 0
        raise DiskFull(f"no space left on the device writing {err.filename or directory}; "
                       f"{directory} keeps {kept} recorded trials; free space, then finish with "
                       f"--resume {directory}") from None


def is_result(record: dict) -> bool:
    """A trials.jsonl line that is the trial's result. A trial lost to its infrastructure is
    not (also as an older dlcli recorded it: failed with a broken pool or a cancellation)."""
    if record.get("status") not in FINISHED:
        return False
    error = record.get("error") or ""
    return not (record["status"] == "failed"
                and error.startswith(("BrokenProcessPool", "CancelledError", "KilledWorker")))


def preview(recipe, *, trials=None, rounds=None, keep=None) -> SearchResult:
    """The first round's configurations, validated, without training (later rounds depend
    on the first round's results)."""
    settings = settings_of(recipe, trials, rounds, keep)
    dims = dims_of(settings.space)
    batch = make_trials(recipe, dims, round_generators(recipe.seed, 1)[0], 0, settings)
    return SearchResult(None, batch, {}, settings, dims)


def run_batch(batch: list[Trial], result: SearchResult, recipe, executor, display) -> None:
    """Submit every trial, record each as it finishes. A trial's own failure is its result; a
    failure of where it ran (a killed worker, a lost Dask worker, a full disk) is retried in a
    renewed pool, up to MAX_ATTEMPTS times, then recorded `lost` for --resume to rerun."""
    trials_dir = result.directory / "trials"
    attempts = {t.number: 0 for t in batch}
    watch = WorkerWatch(executor, result.worker_timeout, result.notify)

    def submit(trial):
        if getattr(executor, "broken", False):
            executor.renew()
        attempts[trial.number] += 1
        return executor.submit(run_trial, trial.recipe, str(trials_dir / str(trial.number)))

    pending = {}
    try:
        for t in batch:
            pending[submit(t)] = t
        while pending:
            if display:
                display.update(result, {t.number for f, t in pending.items() if f.running()})
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            retry = []
            for future in sorted(done, key=lambda f: pending[f].number):
                trial = pending.pop(future)
                try:
                    out = future.result()
                except Exception as err:  # the worker itself failed (or could not run it)
                    out = failed(err, None)
                    if is_infrastructure(err):
                        out["status"] = "lost"
                if out["status"] == "lost":
                    if attempts[trial.number] < MAX_ATTEMPTS:
                        retry.append(trial)
                    else:
                        result.lost.append(trial.number)
                        record(result, recipe, trial, out)
                    continue
                if out["status"] not in FINISHED:  # interrupted: not finished, resume reruns it
                    result.interrupted = True
                    continue
                record(result, recipe, trial, out)
            for trial in retry:
                pending[submit(trial)] = trial
            if pending and not done and watch.gone_for_too_long():
                result.stalled = (f"no worker for {result.worker_timeout:g} s (--worker-timeout); "
                                  f"{len(pending)} trials not run")
                for future, trial in list(pending.items()):
                    future.cancel()
                    result.lost.append(trial.number)
                    record(result, recipe, trial, {"status": "lost", "metric": None, "errors": None,
                                                   "seconds": None, "error": "no worker"})
                pending.clear()
    except KeyboardInterrupt:
        result.interrupted = True
        stop_workers(executor)
    finally:
        for future in pending:
            future.cancel()
    if display:
        display.update(result, set())


def record(result: SearchResult, recipe, trial: Trial, out: dict) -> None:
    line = {"trial": trial.number, "round": trial.round, "seed": trial.seed, "values": trial.values,
            **out}
    append_jsonl(result.directory / "trials.jsonl", line)
    if line["status"] != "lost":
        result.records[trial.number] = line
    write_best(result, recipe)


def write_best(result: SearchResult, recipe) -> None:
    """best.yaml: the best trial's full recipe, rewritten atomically when the best changes."""
    best = best_of(list(result.records.values()), result.settings)
    if best is None or (best is result.best and (result.directory / "best.yaml").exists()):
        return
    result.best = best
    atomic_write_text(result.directory / "best.yaml", trial_yaml(recipe, best))


def trial_dict(recipe, seed: int, values: dict) -> dict:
    """The trial's recipe: its own seed and values, the search's data (same split and dev set)."""
    from .recipe import set_by_path
    d = recipe.to_dict()
    d["seed"] = seed
    if d["data"].get("seed") is None:
        d["data"]["seed"] = recipe.seed
    for key, value in values.items():
        set_by_path(d, key, value)
    return d


def trial_yaml(recipe, rec: dict) -> str:
    from .recipe import recipe_from_dict
    return recipe_from_dict(trial_dict(recipe, rec["seed"], rec["values"]), source=recipe.source).to_yaml()


def search_yaml(recipe, settings: Settings) -> str:
    """The recipe as given, with the search settings used; `--resume` reads it back."""
    from .recipe import recipe_from_dict
    d = recipe.to_dict()
    d["search"] = {**(d.get("search") or {}), "trials": settings.trials, "rounds": settings.rounds,
                   "keep": settings.keep, "space": settings.space}
    note = ("# evaluation.metric f1: the positive class's F1 for two classes, the macro F1 "
            "(unweighted mean over classes) for more\n" if settings.metric == "f1" else "")
    return note + recipe_from_dict(d, source=recipe.source).to_yaml()


def resumed_recipe(directory: Path, trials, rounds, keep):
    from .recipe import load_recipe
    path = directory / "search.yaml"
    if not path.exists():
        raise BadInput("not a search directory (no search.yaml)", file=directory, key="--resume")
    recipe = load_recipe(path)
    saved = recipe.to_dict()["search"]
    for option, value in (("trials", trials), ("rounds", rounds), ("keep", keep)):
        if value is not None and value != saved[option]:
            raise BadInput(f"a resumed search keeps its settings: search.yaml has "
                           f"{option} {saved[option]}, got {value}", key=f"--{option}")
    return recipe


# -- the command line -------------------------------------------------------------------------
def search_cli(recipe_path, overrides, *, trials=None, rounds=None, keep=None, workers=None,
               scheduler=None, runs_dir=None, dry_run=False, resume=None, as_json=False,
               report=False, worker_timeout=60.0) -> int:
    from rich.console import Console
    from .api import as_recipe
    from .search_report import LiveTable, TrialLog, configurations_table, final_report
    if resume is not None and overrides:
        raise BadInput("a resumed search keeps the recipe in its search.yaml", key="--set")
    recipe = resumed_recipe(Path(resume), trials, rounds, keep) if resume is not None \
        else as_recipe(recipe_path, overrides)
    human = Console(stderr=True) if as_json else Console()
    if dry_run:
        result = preview(recipe, trials=trials, rounds=rounds, keep=keep)
        if as_json:
            print(json.dumps(json_document(result)))
        else:
            configurations_table(result, human)
        return 0
    stderr = Console(stderr=True)
    display = None if as_json else LiveTable(stderr) if stderr.is_terminal else TrialLog(stderr)
    from .executors import say
    with open_executor(workers, scheduler, worker_timeout) as executor, \
            display or contextlib.nullcontext():
        result = search(recipe, trials=trials, rounds=rounds, keep=keep, executor=executor,
                        runs_dir=runs_dir, resume=resume, display=display,
                        worker_timeout=worker_timeout, notify=say)
    if as_json:
        print(json.dumps(json_document(result)))
    else:
        final_report(result, human)
    if report and result.directory is not None:
        from .page import write_beside
        write_beside(result.directory)
    if result.interrupted:
        print(f"dlcli: search interrupted; finish it with: dlcli search {recipe_path} "
              f"--resume {result.directory}", file=sys.stderr)
        return 130
    if result.lost or result.stalled:
        why = result.stalled or (f"{len(result.lost)} trial(s) lost to dead workers or a full "
                                 f"disk after {MAX_ATTEMPTS} attempts each")
        print(f"dlcli: the search could not finish: {why}; rerun them with: dlcli search "
              f"{recipe_path} --resume {result.directory}", file=sys.stderr)
        return 1
    records = list(result.records.values())
    if not any(r["status"] == "completed" for r in records):
        print("dlcli: every trial failed or diverged", file=sys.stderr)
        return 1
    if result.best is None:
        with_metric = [r for r in records if r["status"] == "completed" and r["metric"] is not None]
        why = ("none that completed meets evaluation.satisficing" if with_metric
               else f"no completed trial has a {result.settings.metric} to rank by")
        print(f"dlcli: warning: no best trial: {why}", file=sys.stderr)
    return 0


def json_document(result: SearchResult) -> dict:
    trials = []
    for t in result.trials:
        r = result.records.get(t.number)
        trials.append({"trial": t.number, "round": t.round, "seed": t.seed, "values": t.values,
                       "metric": r["metric"] if r else None, "errors": r["errors"] if r else None,
                       "status": r["status"] if r else "sampled",
                       "seconds": r["seconds"] if r else None})
    best = result.best
    return {"search": None if result.directory is None else str(result.directory),
            "trials": trials,
            "best": None if best is None else {"trial": best["trial"], "values": best["values"],
                                               "metric": best["metric"]}}


def _cell(value) -> str:
    return "" if value is None else _fmt(value)


_MOVED = ("LiveTable", "TrialLog", "configurations_table", "final_report", "live_rows", "scatter",
          "short_names")


def __getattr__(name):
    """The rendering moved to search_report.py; its names stay reachable from here."""
    if name in _MOVED:
        from . import search_report
        return getattr(search_report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
