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
                   default_runs_dir, find_run, new_run_dir, read_jsonl)

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
                            targets="real" if regression(recipe) else
                            "sequence" if token_model(recipe) else "auto",
                            token_ids=token_model(recipe))


def prepare(recipe, dtype=None, dataset=None):
    """The recipe's dataset and its model, built and initialised (init_from applied)."""
    recipe = as_recipe(recipe)
    dtype = dtype or recipe.dtype
    if dataset is None:
        dataset = load_data(recipe, dtype)
    with located(recipe):
        model = build(recipe, dataset.input_shape, dtype, dataset)
        check_fit(recipe, model, dataset)
        if recipe.model.init_from:
            init_from(recipe, model)
    return model, dataset


def token_model(recipe) -> bool:
    """A model that reads token ids (embedding / one_hot first): (m, T) labels are per step."""
    layers = recipe.to_dict()["model"]["layers"]
    return bool(layers) and layers[0].get("type") in ("embedding", "one_hot")


def regression(recipe) -> bool:
    """Mean squared error (explicit, or auto with a linear output) learns real-valued targets."""
    cfg = recipe.to_dict()
    if cfg["loss"] != "auto":
        return cfg["loss"] == "mse"
    activations = [layer["activation"] for layer in cfg["model"]["layers"] if layer.get("activation")]
    return not activations or activations[-1] == "linear"


def build(recipe, input_shape, dtype=None, dataset=None):
    from .nn.model import build_model
    from .rng import stream
    cfg = recipe.to_dict()
    if dataset is not None:  # `units: auto`, `vocab: auto` from the data (dlcli/text.py)
        from .text import resolve_auto
        resolve_auto(cfg["model"], dataset)
    try:
        model = build_model(cfg["model"], cfg["loss"], recipe.regularization.l2, input_shape,
                            dtype or recipe.dtype, rng=stream(recipe.seed, "init"),
                            dropout_rng=stream(recipe.seed, "dropout"))
    except (ValueError, TypeError) as err:
        raise recipe.error("model.layers", f"{err} (input shape {tuple(input_shape)})")
    if getattr(dataset, "splits", None):  # GloVe vectors at training time, not when re-loaded
        from .text import init_word_vectors
        init_word_vectors(model, cfg["model"], dataset)
    if hasattr(model.loss, "configure"):  # detection: score / IoU thresholds, max boxes
        model.loss.configure(recipe.evaluation)
    return model


def check_fit(recipe, model, dataset) -> None:
    """The labels must be ones the model's output can give."""
    out = model.net.output_shape
    name = model.loss.name
    from .detect.fit import check_dense_fit
    if check_dense_fit(recipe, model, dataset):  # boxes or masks (dlcli/detect/fit.py)
        return
    y = dataset.splits["train"].y
    if len(out) == 2 and y.ndim == 2 and name == "categorical_crossentropy":
        # a sequence output (m, T, C) against labels (m, T), -1 at padded steps
        if y.shape[1] != out[0] or int(y.max()) >= out[1]:
            raise recipe.error("model.layers", f"the network's output (m, {out[0]}, {out[1]}) "
                               f"cannot give labels of shape {y.shape} with values up to "
                               f"{int(y.max())} (units: auto sizes the last dense layer)")
        return
    if len(out) != 1:
        raise recipe.error("model.layers", f"the network's output has shape {out}; a classifier "
                           "needs one vector per example (add a flatten or global_avgpool layer)")
    y = dataset.splits["train"].y
    if name == "multi_label":
        if y.ndim == 2 and ((y != 0) & (y != 1) & (y != -1)).any():
            raise recipe.error("data.train.y", "multi_label needs labels 0, 1 or -1 (not "
                               f"labelled), the data has {int(y.max())}")
        if y.ndim != 2 or y.shape[1] != out[0]:
            raise recipe.error("model.layers", f"multi_label needs labels of shape (m, {out[0]}), "
                               f"the data has {y.shape}")
        return
    if name == "mse":
        return
    if y.ndim != 1:
        raise recipe.error("loss", f"labels of shape {y.shape} need loss: multi_label")
    c = dataset.n_classes or int(y.max()) + 1
    from .checks import held_out_label_range
    held_out_label_range(recipe, dataset, 2 if name == "binary_crossentropy" else out[0])
    if name == "binary_crossentropy" and c > 2:
        raise recipe.error("model.layers", f"the data has {c} classes but a sigmoid output "
                           "gives 2: use a softmax layer with that many units")
    if name == "categorical_crossentropy" and c > out[0]:
        raise recipe.error("model.layers", f"the data has {c} classes but the last layer has "
                           f"{out[0]} units")


def init_from(recipe, model) -> None:
    path = Path(recipe.model.init_from)
    state = read_params(path, lambda message: recipe.error("model.init_from", message))
    bad = sorted(k for k, v in state.items() if v.dtype.kind in "fc" and not np.isfinite(v).all())
    if bad:
        raise recipe.error("model.init_from", f"{path}: the initial parameters hold NaN or "
                           f"infinite values: {', '.join(bad)}")
    loaded, skipped = model.load_state_dict(state, strict=False)
    if not loaded:
        raise recipe.error("model.init_from", f"nothing in {path} matches the model's parameters")
    if skipped:
        warn(f"init_from {path}: not loaded: {', '.join(skipped)}")


def read_params(path, error) -> dict:
    """A params.npz as {key: array}; `error(message)` makes the BadInput for a file that is not
    one (missing, a bare .npy, not a zip, an array larger than memory)."""
    import zipfile
    from .data.files import check_npz_member
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise error(f"{path} holds a single array (an .npy file), not named parameters")
        with loaded as f:
            for k in f.files:
                try:
                    check_npz_member(f, k, path, None)
                except BadInput as err:
                    raise error(err.message)
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise error(f"cannot read {path}: {err}")


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
    from .checks import check_training
    with located(recipe):
        check_training(recipe, model, dataset)
    run_dir = Path(run_dir) if run_dir else new_run_dir(default_runs_dir(runs_dir), recipe.name)
    from .faults import Interrupts
    from .runs import DirectoryLock
    run_dir.mkdir(parents=True, exist_ok=True)
    save_input_spec(run_dir, dataset)  # what `dlcli predict` needs to read new inputs alike
    if getattr(dataset, "vocab", None) is not None:  # before training: a checkpoint needs it too
        dataset.vocab.save(run_dir / "vocab.json")
    started = time.perf_counter()
    # one writer per run directory; the first Ctrl-C / SIGTERM stops training, any later one
    # waits for the summary to be written (then the CLI exits 130)
    with DirectoryLock(run_dir), disk_full_says(run_dir), Interrupts() as interrupts:
        result = fit_into(recipe, model, dataset, run_dir, quiet, console)
        interrupts.defer()
        atomic_write_npz(run_dir / "params.npz", model.state_dict())
        summary = finish(recipe, model, dataset, result, run_dir, time.perf_counter() - started,
                         predictor(recipe, model, dataset),
                         extra={"iterations": result.iterations})
        (run_dir / "checkpoint.json").unlink(missing_ok=True)
    if interrupts.count and summary["status"] == "completed":
        raise KeyboardInterrupt  # Ctrl-C during the final evaluation: saved, now stop
    return RunResult(run_dir, summary, model, dataset)


@contextlib.contextmanager
def disk_full_says(run_dir: Path):
    """A full disk mid-run: one line saying what is saved and where (exit 1)."""
    from .runs import NO_SPACE, DiskFull
    try:
        yield
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        saved = [name for name in ("recipe.yaml", "metrics.jsonl", "params.npz", "summary.json")
                 if (run_dir / name).exists()]
        epochs = ""
        if (run_dir / "metrics.jsonl").exists():
            lines = read_jsonl(run_dir / "metrics.jsonl")
            epochs = f" (metrics of {len(lines)} epochs)" if lines else ""
        raise DiskFull(f"no space left on the device writing {err.filename or run_dir}; "
                       f"saved in {run_dir}: {', '.join(saved) or 'nothing'}{epochs}") from None


def fit_into(recipe, model, dataset, run_dir: Path, quiet, console):
    """Run the training loop, writing recipe.yaml first, metrics.jsonl as it goes and a
    checkpoint (params.npz, checkpoint.json) every training.checkpoint_every."""
    from . import report
    from .faults import Checkpoints
    from .train import fit
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", run_recipe_yaml(recipe))
    checkpoints = Checkpoints(run_dir, recipe.training.checkpoint_every)
    with JsonlWriter(run_dir / "metrics.jsonl", "w") as metrics, \
            report.TrainingProgress(recipe.training.epochs, console or _console(), quiet) as progress:
        def on_epoch(record):
            metrics.write(record)
            checkpoints.maybe_save(model, record)
            progress.update(record["epoch"], record)
        return fit(model, dataset, recipe, on_epoch=on_epoch, augment=make_augment(recipe),
                   on_batch=progress.batch,
                   on_interrupt=lambda: progress.stopping(f"stopping: saving {run_dir}…"))


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
    from .runs import DirectoryLock
    # `runs list` tells a running ensemble from a crashed one (released at the end, or when
    # an error drops the lock object)
    lock = DirectoryLock(run_dir).__enter__()
    atomic_write_text(run_dir / "recipe.yaml", run_recipe_yaml(recipe))
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
    lock.__exit__()
    return RunResult(run_dir, summary, model, dataset)


def run_recipe_yaml(recipe) -> str:
    """The recipe as run: builtin sources with the values they were generated with."""
    import yaml
    from .data.builtin import with_defaults
    d = recipe.to_dict()
    for name in ("train", "test", "dev", "train_dev"):
        if isinstance(d["data"].get(name), dict) and d["data"][name].get("builtin"):
            d["data"][name] = with_defaults(d["data"][name])
    note = ("# evaluation.metric f1: the positive class's F1 for two classes, the macro F1 "
            "(unweighted mean over classes) for more\n" if d["evaluation"]["metric"] == "f1" else "")
    return note + yaml.safe_dump(d, sort_keys=False, default_flow_style=None, allow_unicode=True)


def make_augment(recipe):
    """(x, y, rng) -> (x, y): the batch augmented; boxes and masks move with their images."""
    specs = recipe.to_dict()["data"]["augment"]
    if not specs:
        return None
    from .data import augment_batch
    from .detect.data import augment_with_targets, target_kind

    def augment(x, y, rng):
        if target_kind(y) is not None:
            return augment_with_targets(x, y, specs, rng)
        return augment_batch(x, specs, rng), y
    return augment


def finish(recipe, model, dataset, result, run_dir: Path, seconds: float, predict,
           extra=None) -> dict:
    """Evaluate every split with `predict`, write predictions and summary.json."""
    from .strategy import diagnose
    from .detect.fit import dense_scores
    errors, metrics, sizes, sequence, extra_scores = {}, {}, {}, {}, {}
    if getattr(model.loss, "embedding", False):
        # tau is chosen on dev first: every split's error is its verification error at tau
        from .faces import evaluate
        ev = recipe.evaluation
        evaluation = evaluate(model, dataset.splits, recipe.seed, ev.one_shot_ways, ev.one_shot_episodes)
        extra = {**evaluation.summary_fields(), **(extra or {})}
    for split in SPLITS:
        data = dataset.splits.get(split)
        sizes[split] = None if data is None else int(data.y.shape[0])
        if data is None:
            errors[split] = None
            continue
        arrays = prediction_arrays(predict(data.x), model.loss, data)
        errors[split] = float(model.loss.error(arrays["probabilities"], data.y))
        if arrays["probabilities"].ndim == 3:  # a sequence output (SPEC "Sequences")
            from .nn.sequence import sequence_metrics
            sequence[split] = sequence_metrics(arrays["probabilities"], data.y)
            if getattr(dataset.vocab, "get", None) and "target" in dataset.vocab:  # pairs: BLEU
                from .translate import split_bleu
                sequence[split]["bleu"] = split_bleu(arrays["probabilities"], data.y,
                                                     dataset.vocab["target"])
        dense_scores(model.loss, arrays, data.y, split, extra_scores)
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
        "parameters": model.parameter_count(), "errors": errors, "sizes": sizes,
        "human_level_error": human, "diagnosis": diagnose(errors, human, sizes), "metrics": metrics,
        "satisficing": satisficing(recipe, model, dataset, errors, seconds, predict),
        # the class names (CSV labels, builtin shapes, h5 list_classes), class k at [k]
        **({"classes": [str(c) for c in dataset.class_names]} if dataset.class_names else {}),
        **extra_scores, **(extra or {}),
    }
    if sequence:
        summary["sequence_metrics"] = {split: sequence.get(split) for split in SPLITS}
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
    """Precision / recall / F1 of the positive class for a binary task (SPEC metrics); for
    more classes their macro averages (as precision, recall, f1), with `per_class` rows."""
    from .metrics import binary_scores, multiclass_scores
    if model.loss.name not in ("binary_crossentropy", "categorical_crossentropy"):
        return None
    if np.ndim(y_true) != 1:  # per-pixel labels: segmentation reports IoU instead
        return None
    if (dataset.n_classes or 2) != 2:
        return multiclass_scores(y_true, y_pred, dataset.n_classes, dataset.class_names)
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
    from .runs import run_state
    summary = run_state(path)
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
