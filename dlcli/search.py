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
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, DlcliError
from .rng import stream
from .runs import append_jsonl, atomic_write_text, default_runs_dir, new_run_dir, read_jsonl

LOG_LAWS = ("log_uniform", "one_minus_log_uniform", "log_int_uniform")
FINISHED = ("completed", "diverged", "failed")
# Environment variables that size the thread pools of numba, OpenMP and the BLAS libraries.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")


# -- the search space -------------------------------------------------------------------------
@dataclass(frozen=True)
class Dim:
    """One searched key: its law and its bounds (lo, hi), or its choices for `choice`."""

    key: str
    law: str
    bounds: tuple

    def draw(self, u: float):
        """The value for a uniform draw u in [0, 1): each law is a monotone map of u."""
        if self.law == "choice":
            return self.bounds[min(int(u * len(self.bounds)), len(self.bounds) - 1)]
        lo, hi = self.bounds
        if self.law == "uniform":
            return lo + u * (hi - lo)
        if self.law == "int_uniform":
            return min(int(lo) + int(u * (hi - lo + 1)), int(hi))
        if self.law == "log_uniform":
            return 10 ** _between(math.log10(lo), math.log10(hi), u)
        if self.law == "one_minus_log_uniform":
            return 1 - 10 ** _between(math.log10(1 - lo), math.log10(1 - hi), u)
        if self.law == "log_int_uniform":
            # Widen by half a unit each side so that rounding gives the end values their share.
            value = round(10 ** _between(math.log10(lo - 0.5), math.log10(hi + 0.5), u))
            return min(max(value, int(lo)), int(hi))
        raise ValueError(f"unknown law {self.law}")

    def narrowed(self, values: list) -> "Dim":
        """The range spanned by `values` (drawn from this dim), sampled by the same law.

        Every law is monotone, so the span of the values is also their span in log space
        (log laws) or in the space of log10(1 - beta) (one_minus_log_uniform).
        """
        if self.law == "choice":
            return Dim(self.key, self.law, tuple(c for c in self.bounds if c in values))
        return Dim(self.key, self.law, (min(values), max(values)))

    @property
    def is_log(self) -> bool:
        return self.law in LOG_LAWS

    def axis(self, value) -> float:
        """Where a value sits on a plot's x axis: log-scaled for log laws."""
        if self.law == "choice":
            return float(self.bounds.index(value)) if value in self.bounds else 0.0
        if self.law == "one_minus_log_uniform":
            return -math.log10(1 - value)  # larger beta to the right, as on the value axis
        return math.log10(value) if self.is_log else float(value)

    def describe(self) -> str:
        if self.law == "choice":
            return f"choice {list(self.bounds)}"
        return f"{self.law} [{_fmt(self.bounds[0])}, {_fmt(self.bounds[1])}]"


def _between(a: float, b: float, u: float) -> float:
    return a + u * (b - a)


def dims_of(space: dict) -> list[Dim]:
    dims = []
    for key, spec in space.items():
        (law, bounds), = spec.items()
        dims.append(Dim(key, law, tuple(bounds)))
    return dims


def sample(dims: list[Dim], rng, n: int) -> list[dict]:
    """n configurations; one uniform draw per key, trial by trial, key by key."""
    return [{d.key: d.draw(float(rng.random())) for d in dims} for _ in range(n)]


def round_generators(seed: int, rounds: int) -> list:
    """One generator per round, children of the recipe's search stream, so that a round's
    draws don't depend on how many rounds follow it."""
    return stream(seed, "search").spawn(rounds)


# -- trials and their ranking -----------------------------------------------------------------
@dataclass
class Trial:
    number: int
    round: int
    seed: int
    values: dict
    recipe: dict  # the full recipe to train, validated


@dataclass
class Settings:
    trials: int
    rounds: int
    keep: float
    space: dict
    metric: str  # evaluation.metric: error | f1 | cost

    def rank_value(self, metric):
        """Lower is better: f1 is reported as itself but ranked by 1 - f1."""
        return 1 - metric if self.metric == "f1" else metric


def ranked(records: list[dict], settings: Settings) -> list[dict]:
    """Completed trials with a metric, those that meet the satisficing metrics first,
    each group by its optimizing metric (the notes' 1 optimizing, N - 1 satisficing)."""
    done = [r for r in records if r["status"] == "completed" and r["metric"] is not None]
    return sorted(done, key=lambda r: (not r.get("satisficing_met", True),
                                       settings.rank_value(r["metric"]), r["trial"]))


def best_of(records: list[dict], settings: Settings) -> dict | None:
    order = ranked(records, settings)
    return order[0] if order and order[0].get("satisficing_met", True) else None


def narrow(dims: list[Dim], records: list[dict], settings: Settings) -> list[Dim]:
    """Coarse to fine: each range shrinks to the span of the best `keep` fraction of the
    finished trials (at least two, so a range does not collapse to a point)."""
    order = ranked(records, settings)
    if not order:
        return dims
    top = order[:min(len(order), max(2, math.ceil(settings.keep * len(order))))]
    return [d.narrowed([r["values"][d.key] for r in top]) for d in dims]


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
        return failed(err, time.perf_counter() - started)
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
        return (summary.get("metrics") or {}).get(split, {}).get("f1")
    lines = read_jsonl(run_dir / "metrics.jsonl")
    return lines[-1]["cost"] if lines else None


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
           resume=None, display=None) -> SearchResult:
    """Run (or with `resume`, finish) a search through `executor`; the Python API under
    `dlcli search`. A resumed search reads its recipe and settings back from its search.yaml
    (`recipe` is not used). `display` gets `update(result, running)` as trials progress."""
    if resume is not None:
        directory = Path(resume)
        recipe = resumed_recipe(directory, trials, rounds, keep)
        settings = settings_of(recipe)
        records = {r["trial"]: r for r in read_jsonl(directory / "trials.jsonl")
                   if r["status"] in FINISHED} if (directory / "trials.jsonl").exists() else {}
    else:
        settings = settings_of(recipe, trials, rounds, keep)
        directory = new_run_dir(default_runs_dir(runs_dir), f"{recipe.name}-search")
        atomic_write_text(directory / "search.yaml", search_yaml(recipe, settings))
        records = {}
    dims = dims_of(settings.space)
    result = SearchResult(directory, [], records, settings, dims)
    write_best(result, recipe)
    for round_, rng in enumerate(round_generators(recipe.seed, settings.rounds)):
        if round_:
            dims = narrow(dims, list(records.values()), settings)
        batch = make_trials(recipe, dims, rng, round_, settings)
        result.trials.extend(batch)
        run_batch([t for t in batch if t.number not in records], result, recipe, executor, display)
        if result.interrupted:
            break
    return result


def preview(recipe, *, trials=None, rounds=None, keep=None) -> SearchResult:
    """The first round's configurations, validated, without training (later rounds depend
    on the first round's results)."""
    settings = settings_of(recipe, trials, rounds, keep)
    dims = dims_of(settings.space)
    batch = make_trials(recipe, dims, round_generators(recipe.seed, 1)[0], 0, settings)
    return SearchResult(None, batch, {}, settings, dims)


def run_batch(batch: list[Trial], result: SearchResult, recipe, executor, display) -> None:
    """Submit every trial, record each as it finishes; a trial's failure is its own."""
    trials_dir = result.directory / "trials"
    pending = {executor.submit(run_trial, t.recipe, str(trials_dir / str(t.number))): t
               for t in batch}
    try:
        while pending:
            if display:
                display.update(result, {t.number for f, t in pending.items() if f.running()})
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: pending[f].number):
                trial = pending.pop(future)
                try:
                    out = future.result()
                except Exception as err:  # the worker itself failed (or could not run it)
                    out = failed(err, None)
                if out["status"] not in FINISHED:  # interrupted: not finished, resume reruns it
                    result.interrupted = True
                    continue
                record(result, recipe, trial, out)
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
    return recipe_from_dict(d, source=recipe.source).to_yaml()


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


# -- executors --------------------------------------------------------------------------------
@contextlib.contextmanager
def open_executor(workers: int | None = None, scheduler: str | None = None):
    """A Dask cluster's executor when `scheduler` is given, else a local process pool."""
    if scheduler:
        with dask_executor(scheduler) as executor:
            yield executor
        return
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    workers = workers or os.cpu_count() or 1
    # Spawned, not forked: a fork of a process that has started Numba's or BLAS's threads can
    # deadlock. The children inherit the environment, so they share Numba's on-disk cache.
    with single_threaded_children(workers > 1), \
            ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as executor:
        yield executor


def stop_workers(executor) -> None:
    """Ctrl-C: end the local workers now. Each has saved the trial it was running when the
    signal came, but the pool has already handed one more trial to a worker, and that one would
    run to its end; `--resume` reruns every unfinished trial anyway."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


@contextlib.contextmanager
def single_threaded_children(enabled: bool):
    """Workers spawned inside this block size their thread pools to one thread, so that W
    workers on W cores don't each start W threads. The driver's own pools are sized
    already (or never used by it), and its environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    if enabled:
        os.environ.update({k: "1" for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def dask_executor(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise BadInput("needs the distributed package: pip install 'dlcli[cluster]'",
                       key="--scheduler")
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise BadInput(f"cannot reach the Dask scheduler at {address}: {err}", key="--scheduler")
    with client:
        # pure=False: a trial writes files, so Dask must never reuse an earlier result.
        yield client.get_executor(pure=False)


# -- the command line -------------------------------------------------------------------------
def search_cli(recipe_path, overrides, *, trials=None, rounds=None, keep=None, workers=None,
               scheduler=None, runs_dir=None, dry_run=False, resume=None, as_json=False,
               report=False) -> int:
    from rich.console import Console
    from .api import as_recipe
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
    display = None if as_json else LiveTable(Console(stderr=True))
    with open_executor(workers, scheduler) as executor, display or contextlib.nullcontext():
        result = search(recipe, trials=trials, rounds=rounds, keep=keep, executor=executor,
                        runs_dir=runs_dir, resume=resume, display=display)
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
    records = list(result.records.values())
    if not any(r["status"] == "completed" for r in records):
        print("dlcli: every trial failed or diverged", file=sys.stderr)
        return 1
    if result.best is None:
        print(f"dlcli: warning: no best trial: none completed with a {result.settings.metric} "
              "that meets evaluation.satisficing", file=sys.stderr)
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


# -- what the user sees -----------------------------------------------------------------------
def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(value) -> str:
    return "" if value is None else _fmt(value)


def _table(result: SearchResult, rows: list, title: str, status_of=None):
    """Trials as rows: their values, then (with `status_of`) how each went."""
    from .report import styled_table
    table = styled_table(title)
    outcome_columns = (result.settings.metric, "train", "dev", "status", "s") if status_of else ()
    names = short_names([d.key for d in result.dims])
    for col in ("trial", "round" if status_of else "seed", *names, *outcome_columns):
        table.add_column(col, justify="left" if col == "status" else "right", overflow="fold")
    best = result.best["trial"] if result.best else None
    for t in rows:
        cells = [str(t.number), str(t.round if status_of else t.seed),
                 *(_fmt(t.values[d.key]) for d in result.dims)]
        if status_of:
            r = result.records.get(t.number) or {}
            errors = r.get("errors") or {}
            cells += [_cell(r.get("metric")), _cell(errors.get("train")), _cell(errors.get("dev")),
                      status_of(t, r), _cell(r.get("seconds"))]
        table.add_row(*cells, style="bold green" if t.number == best else None)
    return table


def short_names(keys: list[str]) -> list[str]:
    """Each dotted key by its shortest unique tail (`optimizer.learning_rate` -> `learning_rate`),
    so that a table of many searched keys still fits a terminal."""
    def tail(key, k):
        return ".".join(key.split(".")[-k:])
    names = []
    for key in keys:
        k = 1
        while sum(tail(other, k) == tail(key, k) for other in keys) > 1:
            k += 1
        names.append(tail(key, k))
    return names


class LiveTable:
    """The trials as they run (queued / running / done), the best so far in green; it gives
    way to the final table, sorted, when the search ends."""

    def __init__(self, console):
        from rich.live import Live
        self.live = Live(console=console, refresh_per_second=4, transient=True)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def update(self, result: SearchResult, running: set) -> None:
        def status(t, r):
            return r.get("status") or ("running" if t.number in running else "queued")
        rows = live_rows(result, running, max(5, self.live.console.height - 8))
        hidden = len(result.trials) - len(rows)
        title = (f"search {result.directory.name}: {len(result.records)}/{len(result.trials)} "
                 f"finished" + (f" ({hidden} not shown)" if hidden else ""))
        self.live.update(_table(result, rows, title, status))


def live_rows(result: SearchResult, running: set, room: int) -> list[Trial]:
    """The trials that fit the terminal: the best, the running, the latest finished, then
    the queued, shown in trial order."""
    if len(result.trials) <= room:
        return result.trials
    best = [result.best["trial"]] if result.best else []
    latest = list(reversed(result.records))  # records are kept in the order trials finished
    queued = [t.number for t in result.trials if t.number not in result.records]
    numbers, shown = {t.number for t in result.trials}, set()
    for number in (*best, *sorted(running), *latest, *queued):
        if len(shown) == room:
            break
        if number in numbers:  # a resumed search has records of rounds still to come
            shown.add(number)
    return [t for t in result.trials if t.number in shown]


def configurations_table(result: SearchResult, console) -> None:
    for d in result.dims:
        console.print(f"{d.key}: {d.describe()}", markup=False, highlight=False)
    console.print(_table(result, result.trials, f"{len(result.trials)} sampled configurations "
                         "(round 0; later rounds follow its results)"))


def final_report(result: SearchResult, console) -> None:
    records = list(result.records.values())
    order = {r["trial"]: k for k, r in enumerate(ranked(records, result.settings))}
    finished = [t for t in result.trials if t.number in result.records]
    finished.sort(key=lambda t: (order.get(t.number, len(order)), t.number))
    console.print(_table(result, finished, "trials, best first", lambda t, r: r["status"]))
    for t in finished:
        r = result.records[t.number]
        if r["status"] == "failed":
            console.print(f"trial {t.number} failed: {r['error']}", markup=False, highlight=False)
    points = [(t, result.records[t.number]["metric"]) for t in finished
              if result.records[t.number]["metric"] is not None]
    if points:
        for d in result.dims:
            console.print(scatter(d, points, result), markup=False, highlight=False)
    if result.best:
        best = result.best
        console.print(f"best: trial {best['trial']}, {result.settings.metric} "
                      f"{_fmt(best['metric'])}; its recipe: {result.directory / 'best.yaml'}")
    console.print(f"search saved in [bold]{result.directory}[/bold]")


def scatter(dim: Dim, points: list, result: SearchResult, width: int = 56, height: int = 10) -> str:
    """The metric against one searched value, as text: where the good trials cluster is where
    to zoom. The x axis is logarithmic for log laws; * marks the best trial."""
    values = [t.values[dim.key] for t, _ in points]
    ys = [m for _, m in points]
    ticks = list(dim.bounds) if dim.law == "choice" else [min(values), max(values)]
    x0, x1, y0, y1 = dim.axis(ticks[0]), dim.axis(ticks[-1]), min(ys), max(ys)

    def column(value) -> int:
        return round((dim.axis(value) - x0) / (x1 - x0) * (width - 1)) if x1 > x0 else width // 2

    grid = [[" "] * width for _ in range(height)]
    best = result.best["trial"] if result.best else None
    for (t, y), value in zip(points, values):
        row = round((y1 - y) / (y1 - y0) * (height - 1)) if y1 > y0 else height // 2
        if grid[row][column(value)] != "*":
            grid[row][column(value)] = "*" if t.number == best else "o"
    label = max(len(_fmt(y0)), len(_fmt(y1)))
    lines = [f"{result.settings.metric} against {dim.key}" + (" (log scale)" if dim.is_log else "")]
    for k, row in enumerate(grid):
        tick = _fmt(y1) if k == 0 else _fmt(y0) if k == height - 1 else ""
        lines.append(f"{tick:>{label}} |{''.join(row)}")
    lines.append(" " * label + " +" + "-" * width)
    lines.append(" " * (label + 2) + _ruler([(column(v), _fmt(v)) for v in ticks], width))
    return "\n".join(lines)


def _ruler(labels: list, width: int) -> str:
    """Axis labels at their columns: the first starts there, the last ends there, the others
    are centred on theirs."""
    line = [" "] * width
    for k, (col, text) in enumerate(labels):
        if k == 0:
            start = col
        elif k == len(labels) - 1:
            start = col - len(text) + 1
        else:
            start = col - len(text) // 2
        start = max(0, min(start, width - len(text)))
        line[start:start + len(text)] = text
    return "".join(line).rstrip()
