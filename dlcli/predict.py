"""`dlcli predict`: a trained run on new inputs, with ONE registry of output kinds.

    result = predict("runs/20261202-lenet5", ["seven.png", "digits.npz"], top=3)
    result.to_json()   # {"run": ..., "predictions": [{"input", "class", "label", "probabilities"}...]}

How a new output kind plugs in (sequences, detection, embeddings...): subclass `OutputKind` in
your own module, decorate it with `@register_kind`, and add that module to `KIND_MODULES` below
(imported only when `predict` runs). Override only what differs from a classifier:

    @register_kind
    class Embedding(OutputKind):
        name = "embedding"
        priority = 10                                  # tried before lower priorities; classifier is 0
        options = frozenset()                          # of OPTIONS ("beam", "windows"...) it accepts
        @classmethod
        def applies(cls, run) -> bool:                 # run: TrainedRun (path, config, recipe, model, spec)
            return run.loss_name == "triplet"
        def read(self, run, inputs) -> Batch:          # INPUT strings -> Batch(names, x, images, paths);
            return super().read(run, inputs)           #   default: image / data files (predict_inputs;
                                                       #   resize=False keeps images at their own size)
        def outputs(self, run, batch) -> dict:         # default: {"probabilities": run.predict_proba(x)}
            return {"embedding": run.model.predict_proba(batch.x)}
        def entries(self, run, batch, outputs) -> list[dict]:   # one JSON object per example,
            return [{"embedding": e.tolist()} for e in outputs["embedding"]]   # "input" is added
        def render(self, result, console) -> None: ...          # the human table (default: generic)
        def write(self, run, batch, outputs, entries, out: Path) -> list[Path]: ...
                                                       # --out: default a .csv / .npz table; a directory
                                                       # gets predictions.csv (kinds add images, masks)

`kind_for(run)` picks the first registered kind, highest priority first, whose `applies(run)`
is true. Kinds get the command's `top` and `options` (SPEC's `--beam`, `--length-alpha`,
`--attention`, `--windows`) as attributes; an option the chosen kind does not list in `options`
is bad usage. The job (`predict`) returns a `PredictResult` and prints nothing; `predict_cli`
is the face (JSON or a table, exit code).
"""

from __future__ import annotations

import csv
import importlib
import io
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import BadInput
from .predict_inputs import Batch, InputOptions, InputSpec, load_input_spec, read_inputs

KINDS: list = []
# Modules that register kinds of other families; each is imported when `predict` first runs,
# and a module that is not there (a branch without that family) is skipped.
KIND_MODULES: list[str] = ["dlcli.text_kind", "dlcli.translate_kind", "dlcli.detect.predict_kinds",
                            "dlcli.faces_predict"]
OPTIONS = ("beam", "length_alpha", "attention", "windows")


def register_kind(cls):
    """Class decorator: add an OutputKind to the registry (highest priority tried first)."""
    if not cls.name or any(k.name == cls.name and k.__qualname__ != cls.__qualname__ for k in KINDS):
        raise ValueError(f"an output kind needs a name of its own, got {cls.name!r}")
    KINDS[:] = [k for k in KINDS if k.name != cls.name] + [cls]
    KINDS.sort(key=lambda k: -k.priority)
    return cls


def _load_kind_modules() -> None:
    for name in KIND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            # skip only the module itself or a missing parent package (dlcli.detect)
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise


# -- the trained run --------------------------------------------------------------------------
@dataclass
class TrainedRun:
    """What a kind needs: the run's directory, recipe, model (params loaded) and input spec."""
    path: Path
    config: dict                   # recipe.yaml as run (every default filled in), as a dict
    model: object                  # nn.model.Model with the run's parameters
    spec: InputSpec
    predict_proba: object = None   # x -> outputs, honouring multi-crop and ensembles
    members: list = field(default_factory=list)

    @cached_property
    def recipe(self):
        """The validated recipe.Recipe (loaded on first use: pydantic costs ~0.1 s)."""
        from .recipe import load_recipe
        return load_recipe(self.path / "recipe.yaml")

    @property
    def loss_name(self) -> str:
        return self.model.loss.name

    def label(self, c) -> str | None:
        return self.spec.label(c)


def load_trained(run) -> TrainedRun:
    """The run's model with its params.npz (an ensemble: its members'), without its data."""
    import yaml

    from .evaluate import ensemble_predictor
    from .runs import find_run, read_json
    path = find_run(run)
    recipe_path = path / "recipe.yaml"
    try:
        config = yaml.safe_load(recipe_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BadInput(f"cannot read the run's recipe: {err}", file=recipe_path)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise BadInput("not a run's recipe (no model:)", file=recipe_path)
    spec = load_input_spec(path, config)
    params = path / "params.npz"
    summary = read_json(path / "summary.json") if (path / "summary.json").exists() else {}
    # an ensemble's members live in <run>/members/<k>/ (summary.json's paths may be relative
    # to wherever training ran)
    member_dirs = sorted((p for p in (path / "members").glob("*") if (p / "params.npz").exists()),
                         key=lambda p: int(p.name) if p.name.isdigit() else p.name) \
        if (summary.get("ensemble") or {}) else []
    if not params.exists() and member_dirs:
        members = [load_trained(p) for p in member_dirs]
        return TrainedRun(path, config, members[0].model, spec,
                          ensemble_predictor([m.predict_proba for m in members]), members)
    if not params.exists():
        raise BadInput("the run has no params.npz (was it trained?)", file=path)
    try:
        with np.load(params, allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise BadInput(f"cannot load the parameters: {err}", file=params)
    run = TrainedRun(path, config, None, spec)
    from .kernels import numba_without_scipy
    numba_without_scipy()  # ~0.2 s of scipy import is a fifth of predicting one image
    run.model = _model(run, state)
    run.predict_proba = _predictor(run)
    return run


def _model(run: TrainedRun, state: dict):
    """The model with the run's parameters. Fast path: built from recipe.yaml as run (every
    default filled in) without validating it again; where that model does not take the
    parameters, through api.build, which says what is wrong."""
    import copy

    from .api import build, located
    from .nn.model import build_model
    cfg = run.config
    resolve, sizes = _auto_sizes(run)
    try:
        model_cfg = copy.deepcopy(cfg["model"])
        if resolve is not None:
            resolve(model_cfg, sizes)
        model = build_model(model_cfg, cfg.get("loss", "auto"),
                            (cfg.get("regularization") or {}).get("l2", 0.0), run.spec.input_shape,
                            cfg.get("dtype", "float32"))
        if hasattr(model.loss, "configure"):  # detection's thresholds, as api.build sets them
            model.loss.configure(SimpleNamespace(**cfg["evaluation"]))
        model.load_state_dict(state)
        return model
    except Exception:  # noqa: BLE001 - the validated route below decides, and says why
        pass
    with located(run.recipe):
        model = build(run.recipe, run.spec.input_shape, **({"dataset": sizes} if sizes else {}))
    try:
        model.load_state_dict(state)
    except ValueError as err:
        raise BadInput(f"the parameters do not fit the recipe's model: {err}", file=run.path / "params.npz")
    return model


def _auto_sizes(run: TrainedRun):
    """(resolve, sizes): how `units: auto` / `vocab: auto` become numbers without the data
    (dlcli/text.py: the run's vocab.json and class count), or (None, None) without text runs."""
    try:
        from .text import resolve_auto, run_sizes
    except ImportError:
        return None, None
    return resolve_auto, run_sizes(run.path, run.spec)


def _predictor(run: TrainedRun):
    """x -> outputs as training evaluated them: evaluation.multi_crop averages ten crops."""
    from .evaluate import crop_pad, multi_crop_proba
    model = run.model
    if (run.config.get("evaluation") or {}).get("multi_crop") and run.spec.is_image:
        pad = crop_pad((run.config.get("data") or {}).get("augment") or [])
        return lambda x: multi_crop_proba(model, x, pad)
    return model.predict_proba


# -- output kinds -----------------------------------------------------------------------------
class OutputKind:
    """A classifier's behaviour; other kinds override what differs (see the module docstring)."""
    name: str | None = None
    priority = 0
    options: frozenset = frozenset()

    def __init__(self, top: int | None = None, x_key: str | None = None, **options):
        self.top = top
        self.x_key = x_key
        for name in OPTIONS:
            setattr(self, name, options.get(name))

    @classmethod
    def applies(cls, run: TrainedRun) -> bool:
        return False

    def read(self, run: TrainedRun, inputs: list, resize: bool = True) -> Batch:
        """Image and data files as training read its data (see predict_inputs)."""
        src = (run.config["data"].get("train") or {})
        return read_inputs(run.spec, inputs, InputOptions(
            x_key=self.x_key, label_key=src.get("y") if str(src.get("path", "")).endswith(".csv") else None,
            default_x=src.get("x") if src.get("path") else None), resize=resize)

    def outputs(self, run: TrainedRun, batch: Batch) -> dict:
        return {"probabilities": run.predict_proba(batch.x)}

    def entries(self, run: TrainedRun, batch: Batch, outputs: dict) -> list:
        p = class_probabilities(outputs["probabilities"])
        out = []
        for row in p:
            c = int(np.argmax(row))
            entry = {"class": c, "label": run.label(c), "probabilities": [float(v) for v in row]}
            if self.top:
                order = np.argsort(-row, kind="stable")[:self.top]
                entry["top"] = [{"class": int(k), "label": run.label(int(k)),
                                 "probability": float(row[k])} for k in order]
            out.append(entry)
        return out

    def render(self, result: "PredictResult", console) -> None:
        from .report import styled_table
        from rich.text import Text
        k = self.top or 1
        _heading(result, console)
        table = styled_table()
        table.add_column("input")
        table.add_column("class", justify="right")
        table.add_column("label")
        table.add_column("probability", justify="right")
        for name, e in _shown(result):
            ranked = e.get("top") or [{"class": e["class"], "label": e["label"],
                                       "probability": e["probabilities"][e["class"]]}]
            for j, t in enumerate(ranked[:k]):
                table.add_row(Text(name if j == 0 else ""), str(t["class"]),
                              Text(t["label"] if t["label"] is not None else "—"),
                              f"{t['probability']:.4f}", style=None if j == 0 else "dim")
        console.print(table)
        _more(result, console)

    def table_rows(self, run: TrainedRun, names: list, entries: list) -> tuple[list, list]:
        """(header, rows) of the --out table: one row per example."""
        n = len(entries[0]["probabilities"]) if entries else 0
        header = ["input", "class", "label", "probability"] + [
            f"p_{run.label(c) or c}" for c in range(n)]
        rows = [[name, e["class"], e["label"] or "", e["probabilities"][e["class"]],
                 *e["probabilities"]] for name, e in zip(names, entries)]
        return header, rows

    def write(self, run: TrainedRun, batch: Batch, outputs: dict, entries: list, out: Path) -> list:
        """--out FILE.csv | FILE.npz: the predictions of every input; any other path: a
        directory that gets predictions.csv."""
        from .runs import atomic_write_bytes, atomic_write_npz
        suffix = out.suffix.lower()
        if suffix == ".npz":
            arrays = {"y_pred": np.array([e.get("class") for e in entries]),
                      "index": np.arange(len(entries)), "input": np.array(batch.names)}
            arrays.update({k: np.asarray(v) for k, v in outputs.items()})
            atomic_write_npz(out, arrays)
            return [out]
        target = out if suffix == ".csv" else out / "predictions.csv"
        header, rows = self.table_rows(run, batch.names, entries)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write_bytes(target, buf.getvalue().encode())
        return [target]


@register_kind
class Classifier(OutputKind):
    """Sigmoid or softmax outputs: the most probable class, its label, every class's probability."""
    name = "classifier"

    @classmethod
    def applies(cls, run):
        return run.loss_name in ("binary_crossentropy", "categorical_crossentropy")


def class_probabilities(p) -> np.ndarray:
    """(m, C) probabilities indexed by class; a sigmoid's (m, 1) P(1) becomes [P(0), P(1)]."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1 or p.shape[1] == 1:
        p = p.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    return p


@register_kind
class MultiLabel(Classifier):
    """loss: multi_label: every label with probability >= 0.5 is present."""
    name = "multi_label"

    @classmethod
    def applies(cls, run):
        return run.loss_name == "multi_label"

    def entries(self, run, batch, outputs):
        out = []
        for row in np.asarray(outputs["probabilities"], dtype=np.float64):
            present = [int(k) for k in np.flatnonzero(row >= 0.5)]
            out.append({"class": present, "label": [run.label(k) for k in present],
                        "probabilities": [float(v) for v in row]})
        return out

    def render(self, result, console):
        _generic_table(result, console, lambda e: [", ".join(
            (lab or str(c)) for c, lab in zip(e["class"], e["label"])) or "—"], ["labels present"])

    def table_rows(self, run, names, entries):
        n = len(entries[0]["probabilities"]) if entries else 0
        header = ["input", "labels"] + [f"p_{run.label(c) or c}" for c in range(n)]
        return header, [[name, ";".join(map(str, e["class"])), *e["probabilities"]]
                        for name, e in zip(names, entries)]


@register_kind
class Regression(Classifier):
    """loss: mse: the model's outputs as numbers (no class)."""
    name = "regression"

    @classmethod
    def applies(cls, run):
        return run.loss_name == "mse"

    def outputs(self, run, batch):
        return {"values": run.predict_proba(batch.x)}

    def entries(self, run, batch, outputs):
        values = np.asarray(outputs["values"], dtype=np.float64).reshape(len(batch.names), -1)
        return [{"class": None, "label": None, "probabilities": None,
                 "value": [float(v) for v in row]} for row in values]

    def render(self, result, console):
        _generic_table(result, console,
                       lambda e: [", ".join(f"{v:.6g}" for v in e["value"])], ["value"])

    def table_rows(self, run, names, entries):
        n = len(entries[0]["value"]) if entries else 0
        return (["input"] + [f"value_{k}" for k in range(n)],
                [[name, *e["value"]] for name, e in zip(names, entries)])


def _heading(result, console) -> None:
    from rich.text import Text
    n = len(result.entries)
    console.print(Text.assemble((Path(result.run).name, "bold"), f": {n} prediction" + "s" * (n != 1)))


def _generic_table(result, console, cells, headers) -> None:
    from rich.text import Text

    from .report import styled_table
    _heading(result, console)
    table = styled_table()
    table.add_column("input")
    for h in headers:
        table.add_column(h)
    for name, e in _shown(result):
        table.add_row(Text(name), *(Text(str(c)) for c in cells(e)))
    console.print(table)
    _more(result, console)


SHOWN = 20  # rows of a human table; a whole data file goes to --out or --json


def _shown(result):
    return list(zip(result.names, result.entries))[:SHOWN]


def _more(result, console) -> None:
    rest = len(result.entries) - SHOWN
    if rest > 0:
        where = ", ".join(map(str, result.written)) or "--out FILE.csv or --json"
        console.print(f"… and {rest} more (all of them: {where})", style="dim")


def kind_for(run: TrainedRun):
    _load_kind_modules()
    for kind in KINDS:
        if kind.applies(run):
            return kind
    raise BadInput(f"dlcli predict does not know what the outputs of a {run.loss_name} run are",
                   file=run.path)


# -- the job and its face ---------------------------------------------------------------------
@dataclass
class PredictResult:
    run: str
    kind: object                   # the OutputKind instance that made it
    names: list                    # each example's input
    entries: list                  # each example's JSON object, without "input"
    written: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"run": self.run,
                "predictions": [{"input": n, **e} for n, e in zip(self.names, self.entries)]}


def predict(run, inputs: list, *, x_key=None, top=None, out=None, **options) -> PredictResult:
    """The run's predictions for INPUT strings (files, or what a kind reads); --out written."""
    trained = run if isinstance(run, TrainedRun) else load_trained(run)
    cls = kind_for(trained)
    given = {k: v for k, v in options.items() if v not in (None, False)}
    for name in given:
        if name not in cls.options:
            flag = "--" + name.replace("_", "-")
            raise BadInput(f"a {cls.name} run takes no {flag}", key=flag)
    if top is not None and top < 1:
        raise BadInput(f"must be at least 1, got {top}", key="--top")
    kind = cls(top=top, x_key=x_key, **given)
    batch = kind.read(trained, list(inputs))
    outputs = kind.outputs(trained, batch)
    entries = kind.entries(trained, batch, outputs)
    result = PredictResult(str(trained.path), kind, list(batch.names), entries)
    if out is not None:
        result.written = kind.write(trained, batch, outputs, entries, Path(out))
    return result


def predict_cli(run, inputs, *, x_key=None, as_json=False, out=None, top=None, **options) -> int:
    import json
    import sys
    result = predict(run, inputs, x_key=x_key, top=top, out=out, **options)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        from rich.console import Console
        result.kind.render(result, Console())
    for path in result.written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
