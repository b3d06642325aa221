"""The Python API under the CLI: what a notebook user calls too.

    from dlcli import api
    result = api.train("recipes/quickstart.yaml", overrides=["training.epochs=50"])
    result.summary["errors"], result.run_dir

`prepare` builds a recipe's data and model; `train` runs it and writes the run directory;
`load_run` / `load_model` read one back. The `*_cli` functions add the terminal output and
return the process exit code.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput
from .predict_inputs import save_input_spec
from .runs import (JsonlWriter, atomic_write_json, atomic_write_npz, atomic_write_text,
                   default_runs_dir, find_run, new_run_dir, read_json, read_jsonl)

SPLITS = ("train", "train_dev", "dev", "test")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    model: object
    dataset: object


def _console(stderr=False):
    from rich.console import Console
    return Console(stderr=stderr)


def warn(message: str) -> None:
    print(f"dlcli: warning: {message}", file=sys.stderr)


def as_recipe(recipe, overrides=()):
    from .recipe import Recipe, load_recipe, recipe_from_dict
    if isinstance(recipe, Recipe):
        return recipe_from_dict(recipe.to_dict(), source=recipe.source, overrides=overrides) \
            if overrides else recipe
    if isinstance(recipe, dict):
        return recipe_from_dict(recipe, overrides=overrides)
    return load_recipe(recipe, overrides)


@contextlib.contextmanager
def located(recipe):
    """Give a BadInput raised with only a key path the recipe's file and line."""
    try:
        yield
    except BadInput as err:
        if err.file is None and recipe.source is not None:
            err.file = str(recipe.source)
            if err.key and err.line is None:
                err.line = recipe.line_of(err.key)
        raise


# -- building -------------------------------------------------------------------------------
def load_data(recipe, dtype=None):
    """The recipe's dataset, seeded by data.seed where given, else by the recipe's seed."""
    from .data import load_dataset
    data_cfg = recipe.to_dict()["data"]
    seed = recipe.seed if data_cfg.get("seed") is None else data_cfg["seed"]
    with located(recipe):
        return load_dataset(data_cfg, seed, dtype or recipe.dtype,
                            targets="real" if regression(recipe) else "auto")


def prepare(recipe, dtype=None, dataset=None):
    """The recipe's dataset and its model, built and initialised (init_from applied)."""
    recipe = as_recipe(recipe)
    dtype = dtype or recipe.dtype
    if dataset is None:
        dataset = load_data(recipe, dtype)
    with located(recipe):
        model = build(recipe, dataset.input_shape, dtype)
        check_fit(recipe, model, dataset)
        if recipe.model.init_from:
            init_from(recipe, model)
    return model, dataset


def regression(recipe) -> bool:
    """Mean squared error (explicit, or auto with a linear output) learns real-valued targets."""
    cfg = recipe.to_dict()
    if cfg["loss"] != "auto":
        return cfg["loss"] == "mse"
    activations = [layer["activation"] for layer in cfg["model"]["layers"] if layer.get("activation")]
    return not activations or activations[-1] == "linear"


def build(recipe, input_shape, dtype=None):
    from .nn.model import build_model
    from .rng import stream
    cfg = recipe.to_dict()
    try:
        return build_model(cfg["model"], cfg["loss"], recipe.regularization.l2, input_shape,
                           dtype or recipe.dtype, rng=stream(recipe.seed, "init"),
                           dropout_rng=stream(recipe.seed, "dropout"))
    except (ValueError, TypeError) as err:
        raise recipe.error("model.layers", f"{err} (input shape {tuple(input_shape)})")


def check_fit(recipe, model, dataset) -> None:
    """The labels must be ones the model's output can give."""
    out = model.net.output_shape
    name = model.loss.name
    if len(out) != 1:
        raise recipe.error("model.layers", f"the network's output has shape {out}; a classifier "
                           "needs one vector per example (add a flatten or global_avgpool layer)")
    y = dataset.splits["train"].y
    if name == "multi_label":
        if y.ndim != 2 or y.shape[1] != out[0]:
            raise recipe.error("model.layers", f"multi_label needs labels of shape (m, {out[0]}), "
                               f"the data has {y.shape}")
        return
    if name == "mse":
        return
    if y.ndim != 1:
        raise recipe.error("loss", f"labels of shape {y.shape} need loss: multi_label")
    c = dataset.n_classes or int(y.max()) + 1
    if name == "binary_crossentropy" and c > 2:
        raise recipe.error("model.layers", f"the data has {c} classes but a sigmoid output "
                           "gives 2: use a softmax layer with that many units")
    if name == "categorical_crossentropy" and c > out[0]:
        raise recipe.error("model.layers", f"the data has {c} classes but the last layer has "
                           f"{out[0]} units")


def init_from(recipe, model) -> None:
    path = Path(recipe.model.init_from)
    try:
        with np.load(path) as f:
            state = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise recipe.error("model.init_from", f"cannot read {path}: {err}")
    loaded, skipped = model.load_state_dict(state, strict=False)
    if not loaded:
        raise recipe.error("model.init_from", f"nothing in {path} matches the model's parameters")
    if skipped:
        warn(f"init_from {path}: not loaded: {', '.join(skipped)}")


# -- training -------------------------------------------------------------------------------
def train(recipe, *, overrides=(), runs_dir=None, run_dir=None, quiet=True, console=None,
          dataset=None) -> RunResult:
    """Train a recipe and write its run directory (SPEC: 'A run directory').

    `dataset` reuses data already loaded (an ensemble's members share their split).
    """
    from .evaluate import predictor
    recipe = as_recipe(recipe, overrides)
    model, dataset = prepare(recipe, dataset=dataset)
    check_satisficing(recipe)
    run_dir = Path(run_dir) if run_dir else new_run_dir(default_runs_dir(runs_dir), recipe.name)
    save_input_spec(run_dir, dataset)  # what `dlcli predict` needs to read new inputs alike
    started = time.perf_counter()
    result = fit_into(recipe, model, dataset, run_dir, quiet, console)
    atomic_write_npz(run_dir / "params.npz", model.state_dict())
    summary = finish(recipe, model, dataset, result, run_dir, time.perf_counter() - started,
                     predictor(recipe, model, dataset))
    return RunResult(run_dir, summary, model, dataset)


def fit_into(recipe, model, dataset, run_dir: Path, quiet, console):
    """Run the training loop, writing recipe.yaml first and metrics.jsonl as it goes."""
    from . import report
    from .train import fit
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    with JsonlWriter(run_dir / "metrics.jsonl", "w") as metrics, \
            report.TrainingProgress(recipe.training.epochs, console or _console(), quiet) as progress:
        def on_epoch(record):
            metrics.write(record)
            progress.update(record["epoch"], record)
        return fit(model, dataset, recipe, on_epoch=on_epoch, augment=make_augment(recipe))


def train_ensemble(recipe, n: int, *, runs_dir=None, quiet=True, console=None) -> RunResult:
    """N models from seeds seed..seed+N-1 on one split; their probabilities averaged.

    Each member is an ordinary run under `<run>/members/<k>/`; the ensemble's own directory
    holds the recipe, the averaged predictions and the summary (no params.npz of its own).
    """
    from .evaluate import ensemble_predictor, predictor
    from .train import FitResult
    recipe = as_recipe(recipe)
    dataset = load_data(recipe)  # each member's train() builds and checks its own model
    run_dir = new_run_dir(default_runs_dir(runs_dir), f"{recipe.name}-ensemble{n}")
    atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    save_input_spec(run_dir, dataset)
    started = time.perf_counter()
    data_seed = recipe.seed if recipe.data.seed is None else recipe.data.seed
    members = []
    for k in range(n):
        # data.seed written out, so each member's run directory re-predicts on this same split
        member = as_recipe(recipe, [f"seed={recipe.seed + k}", f"data.seed={data_seed}"])
        members.append(train(member, run_dir=run_dir / "members" / str(k), quiet=quiet,
                             console=console, dataset=dataset))
        if members[-1].summary["status"] != "completed":
            break  # Ctrl-C or divergence: the ensemble stops with what it has
    combined = FitResult(
        status=next((m.summary["status"] for m in members if m.summary["status"] != "completed"),
                    "completed"),
        epochs=max(m.summary["epochs"] for m in members))
    model = members[0].model
    summary = finish(recipe, model, dataset, combined, run_dir, time.perf_counter() - started,
                     ensemble_predictor([predictor(recipe, m.model, dataset) for m in members]),
                     extra={"ensemble": {"members": n, "runs": [str(m.run_dir) for m in members]},
                            "parameters": sum(m.summary["parameters"] for m in members)})
    return RunResult(run_dir, summary, model, dataset)


def make_augment(recipe):
    specs = recipe.to_dict()["data"]["augment"]
    if not specs:
        return None
    from .data import augment_batch
    return lambda x, rng: augment_batch(x, specs, rng)


def finish(recipe, model, dataset, result, run_dir: Path, seconds: float, predict,
           extra=None) -> dict:
    """Evaluate every split with `predict`, write predictions and summary.json."""
    from .strategy import diagnose
    errors, metrics = {}, {}
    if getattr(model.loss, "embedding", False):
        # tau is chosen on dev first: every split's error is its verification error at tau
        from .faces import evaluate
        ev = recipe.evaluation
        evaluation = evaluate(model, dataset.splits, recipe.seed, ev.one_shot_ways, ev.one_shot_episodes)
        extra = {**evaluation.summary_fields(), **(extra or {})}
    for split in SPLITS:
        data = dataset.splits.get(split)
        if data is None:
            errors[split] = None
            continue
        arrays = prediction_arrays(predict(data.x), model.loss, data)
        errors[split] = float(model.loss.error(arrays["probabilities"], data.y))
        atomic_write_npz(run_dir / "predictions" / f"{split}.npz", arrays)
        scores = classification_scores(recipe, model, dataset, data.y, arrays["y_pred"])
        if scores:
            metrics[split] = scores
    human = recipe.evaluation.human_level_error
    summary = {
        "name": recipe.name, "status": result.status, "epochs": result.epochs,
        "seconds": round(seconds, 3),
        "examples_per_second": round(result.examples / result.train_seconds, 1)
        if result.train_seconds > 0 else None,
        "parameters": model.parameter_count(), "errors": errors, "human_level_error": human,
        "diagnosis": diagnose(errors, human), "metrics": metrics,
        "satisficing": satisficing(recipe, model, dataset, errors, seconds, predict),
        **(extra or {}),
    }
    if result.status == "diverged":
        summary["diverged_at_epoch"] = result.diverged_at
    if result.stopped_early_at:
        summary["stopped_early_at_epoch"] = result.stopped_early_at
        summary["best_epoch"] = result.best_epoch
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def prediction_arrays(probabilities, loss, data) -> dict:
    """predictions/<split>.npz, exactly SPEC's arrays: `index` is the row in the split."""
    return {"y_true": data.y, "y_pred": loss.predict(probabilities), "probabilities": probabilities,
            "index": np.arange(data.y.shape[0])}


def classification_scores(recipe, model, dataset, y_true, y_pred):
    """Precision / recall / F1 of the positive class for a binary task (SPEC metrics)."""
    from .metrics import binary_scores
    if model.loss.name not in ("binary_crossentropy", "categorical_crossentropy"):
        return None
    if (dataset.n_classes or 2) != 2:
        return None
    return binary_scores(y_true, y_pred, recipe.evaluation.positive_class)


SATISFICING = ("predict_ms_per_example", "parameters", "seconds", "examples_per_second",
               "train_error", "train_dev_error", "dev_error", "test_error")


def check_satisficing(recipe) -> None:
    for name in recipe.evaluation.satisficing:
        if name not in SATISFICING:
            raise recipe.error(f"evaluation.satisficing.{name}",
                               f"unknown metric; one of {', '.join(SATISFICING)}")


def satisficing(recipe, model, dataset, errors, seconds, predict) -> dict:
    out = {}
    for name, bound in recipe.evaluation.satisficing.items():
        bound = bound if isinstance(bound, dict) else bound.model_dump()
        value = satisficing_value(name, model, dataset, errors, seconds, predict)
        met = value is not None and all(
            (value <= v) if k == "max" else (value >= v) for k, v in bound.items() if v is not None)
        out[name] = {"value": value, **{k: v for k, v in bound.items() if v is not None}, "met": met}
    return out


def satisficing_value(name, model, dataset, errors, seconds, predict):
    if name.endswith("_error"):
        return errors.get(name[:-len("_error")])
    if name == "parameters":
        return model.parameter_count()
    if name == "seconds":
        return round(seconds, 3)
    split = dataset.splits.get("dev") or dataset.splits["train"]
    x = split.x[:1000]
    t0 = time.perf_counter()
    predict(x)
    per_example = (time.perf_counter() - t0) / max(1, x.shape[0])
    if name == "predict_ms_per_example":
        return round(per_example * 1000, 6)
    return round(1.0 / per_example, 1) if per_example > 0 else None


# -- reading runs ---------------------------------------------------------------------------
@dataclass
class Run:
    path: Path
    summary: dict
    metrics: list

    @property
    def recipe(self):
        from .recipe import load_recipe
        return load_recipe(self.path / "recipe.yaml")


def load_run(run, runs_dir=None) -> Run:
    path = find_run(run, runs_dir)
    summary_path = path / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else {}
    metrics_path = path / "metrics.jsonl"
    metrics = read_jsonl(metrics_path) if metrics_path.exists() else []
    return Run(path, summary, metrics)


def load_model(run_dir):
    """(model, dataset) of a trained run: the recipe's data and the run's params.npz."""
    run = load_run(run_dir)
    recipe = run.recipe
    model, dataset = prepare(recipe)
    params = run.path / "params.npz"
    if not params.exists():
        raise BadInput("the run has no params.npz", file=run.path)
    with np.load(params) as f:
        model.load_state_dict({k: f[k] for k in f.files})
    return model, dataset


# -- command-line front ends ----------------------------------------------------------------
def train_cli(recipe_path, overrides, runs_dir, quiet, ensemble=1, report_page=False) -> int:
    from . import report
    recipe = as_recipe(recipe_path, overrides)
    if ensemble > 1:
        result = train_ensemble(recipe, ensemble, runs_dir=runs_dir, quiet=quiet)
    else:
        result = train(recipe, runs_dir=runs_dir, quiet=quiet)
    summary = result.summary
    if not quiet:
        console = _console()
        costs = [r["cost"] for r in read_jsonl(result.run_dir / "metrics.jsonl")]
        if costs:
            report.learning_curve(costs, console)
        report.errors_table(summary, console)
        if summary.get("embedding"):  # verification, recognition, one-shot, distances
            from .render_faces import embedding_report
            embedding_report(summary, console)
        if summary.get("metrics"):
            report.metrics_table(summary["metrics"], console)
        console.print(f"run saved in [bold]{result.run_dir}[/bold]")
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
    return 0


def show_cli(recipe_path, overrides) -> int:
    from . import report
    recipe = as_recipe(recipe_path, overrides)
    model, _ = prepare(recipe)
    report.model_summary(model.summary(), model.parameter_count(), _console(),
                         title=f"{recipe.name}: input {model.input_shape}")
    return 0


def _all_runs(runs_dir):
    root = default_runs_dir(runs_dir)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "summary.json").exists()]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def runs_list_cli(runs_dir) -> int:
    from . import report
    rows = [{**read_json(p / "summary.json"), "run": p.name} for p in _all_runs(runs_dir)]
    report.runs_table(rows, _console())
    return 0


def runs_show_cli(runs_dir, run) -> int:
    from . import report
    r = load_run(run, runs_dir)
    report.run_details({**r.summary, "run": r.path.name}, (r.path / "recipe.yaml").read_text(),
                       r.metrics, _console())
    return 0


def runs_compare_cli(runs_dir, runs) -> int:
    import yaml
    from . import report
    if len(runs) < 2:
        raise BadInput("compare needs two or more runs")
    loaded = [load_run(r, runs_dir) for r in runs]
    report.compare_table([(r.path.name, r.summary, yaml.safe_load((r.path / "recipe.yaml").read_text()))
                          for r in loaded], _console())
    return 0
