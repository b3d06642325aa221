"""The command-line front ends of `train`, `show` and `runs`: each calls the jobs in api.py
(or reads run directories), hands the results to report.py to draw, and returns the exit code
(SPEC: 0, 1 failed job, 2 bad input, 130 interrupted)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from . import api
from .errors import BadInput
from .runs import atomic_write_json, find_run, read_jsonl


# -- command-line front ends ----------------------------------------------------------------
def train_cli(recipe_path, overrides, runs_dir, quiet, ensemble=1, report_page=False,
              profile=False) -> int:
    from rich.text import Text
    from . import report
    recipe = api.as_recipe(recipe_path, overrides)
    profiled, dataset = None, None
    if profile:  # a twin of the model, before training: the run trains as without the flag
        from .profile import profile_recipe
        dataset = api.load_data(recipe) if ensemble == 1 else None
        with api._console(stderr=True).status("profiling the first steps…") if not quiet \
                else contextlib.nullcontext():
            profiled = profile_recipe(recipe, dataset=dataset)
    if ensemble > 1:
        result = api.train_ensemble(recipe, ensemble, runs_dir=runs_dir, quiet=quiet)
    else:
        result = api.train(recipe, runs_dir=runs_dir, quiet=quiet, dataset=dataset)
    summary = result.summary
    if profiled is not None:
        atomic_write_json(result.run_dir / "profile.json", profiled.to_json())
    if not quiet:
        console = api._console()
        metrics_path = result.run_dir / "metrics.jsonl"  # an ensemble's are its members'
        costs = [r["cost"] for r in read_jsonl(metrics_path)] if metrics_path.exists() else []
        if costs:
            report.learning_curve(costs, console)
        stopped = report.early_stopping_note(summary, recipe, read_jsonl(metrics_path)
                                             if metrics_path.exists() else [])
        if stopped:
            console.print(stopped)
        report.errors_table(summary, console)
        if summary.get("embedding"):  # verification, recognition, one-shot, distances
            from .render_faces import embedding_report
            embedding_report(summary, console)
        if summary.get("metrics"):
            report.metrics_table(summary["metrics"], console)
        if summary.get("sequence_metrics"):
            report.sequence_table(summary["sequence_metrics"], console)
        if summary.get("detection") or summary.get("segmentation"):
            from .detect.render import dense_tables
            dense_tables(summary, console, result.dataset.class_names)
        if profiled is not None:
            from .render_profile import profile_table
            profile_table(profiled, console)
        console.print(Text("run saved in ") + Text(str(result.run_dir), style="bold"))
    elif summary["status"] != "interrupted":  # whose own message names the run
        print(f"run saved in {result.run_dir}", file=sys.stderr)
    if report_page:
        from .page import write_beside
        write_beside(result.run_dir)
    status = summary["status"]
    if status == "diverged":
        print(f"dlcli: training diverged at epoch {summary.get('diverged_at_epoch')} (the cost "
              f"became NaN); kept the last good parameters; try a smaller learning rate than "
              f"{recipe.optimizer.learning_rate}", file=sys.stderr)
        return 1
    if status == "interrupted":
        print(f"dlcli: interrupted after {summary['epochs']} epochs; saved {result.run_dir}",
              file=sys.stderr)
        return 130
    unmet = [name for name, v in (summary.get("satisficing") or {}).items() if not v["met"]]
    if unmet and recipe.evaluation.fail_on_unmet:
        print(f"dlcli: satisficing metric{'s' * (len(unmet) > 1)} unmet: "
              + ", ".join(f"{n} = {summary['satisficing'][n]['value']}" for n in unmet)
              + " (evaluation.fail_on_unmet)", file=sys.stderr)
        return 1
    return 0


def show_cli(recipe_path, overrides) -> int:
    from . import report
    recipe = api.as_recipe(recipe_path, overrides)
    model, _ = api.prepare(recipe)
    report.model_summary(model.summary(), model.parameter_count(), api._console(),
                         title=f"{recipe.name}: input {model.input_shape}")
    return 0


def _all_runs(runs_dir):
    from .runs import runs_root
    root = runs_root(runs_dir, must_exist=True)
    if not root.is_dir():
        return []
    # a run without summary.json (training, or killed) is listed too: `running` / `crashed`
    runs = [p for p in root.iterdir() if not (p / "search.yaml").exists()
            and ((p / "summary.json").exists() or (p / "recipe.yaml").exists())]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def runs_list_cli(runs_dir) -> int:
    from . import report
    from .runs import run_state, runs_root
    from .search_runs import is_search, search_row
    root = runs_root(runs_dir)
    if not root.exists():
        print(f"dlcli: no runs yet: {root} does not exist", file=sys.stderr)
    rows = [{**run_state(p), "run": p.name} for p in _all_runs(runs_dir)]
    if root.is_dir():
        rows += [search_row(p) for p in root.iterdir() if p.is_dir() and is_search(p)]
        rows.sort(key=lambda row: row["run"], reverse=True)
    report.runs_table(rows, api._console())
    return 0


def runs_show_cli(runs_dir, run) -> int:
    from . import report
    from .search_runs import is_search, search_details
    search = Path(run) if is_search(Path(run)) else None
    if search is None and not (Path(run) / "summary.json").exists():
        try:
            found = find_run(run, runs_dir)
        except BadInput:
            found = None
        search = found if found is not None and is_search(found) else None
    if search is not None:
        search_details(search, api._console())
        return 0
    r = api.load_run(run, runs_dir)
    summary = dict(r.summary)
    if "sizes" not in summary:  # a run saved before summary.json kept them
        from .analyze import split_sizes
        summary["sizes"] = split_sizes(r.path)
    report.run_details({**summary, "run": r.path.name}, (r.path / "recipe.yaml").read_text(),
                       r.metrics, api._console())
    return 0


def runs_compare_cli(runs_dir, runs) -> int:
    import yaml
    from . import report
    if len(runs) < 2:
        raise BadInput("compare needs two or more runs")
    loaded = [api.load_run(r, runs_dir) for r in runs]
    report.compare_table([(r.path.name, r.summary, yaml.safe_load((r.path / "recipe.yaml").read_text()))
                          for r in loaded], api._console())
    return 0
