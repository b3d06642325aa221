"""`dlcli analyze`: the notes' error analysis and bias/variance, over a trained run.

Error analysis, as the notes run it: list the split's mistakes, let the user tag each one
(dog, great cat, blurry, mislabeled...), then count the tags; a tag's ceiling is the error the
split would have if every mistake with that tag were fixed, which says which idea is worth
working on. Predictions come from `RUN/predictions/<split>.npz`; a run without them is
re-predicted from its params.npz and recipe.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from . import metrics
from .errors import BadInput
from .contact_sheet import contact_sheet, display_images
from .runs import atomic_write_bytes, atomic_write_text, find_run, read_json

SPLITS = ("train", "train_dev", "dev", "test")
PREDICTION_ARRAYS = ("y_true", "y_pred", "probabilities", "index")
SHEET_COLUMNS = ("index", "true", "predicted", "probability", "tags")
LABEL_NOISE_TAGS = ("mislabeled", "mislabelled")
# The lecture's example: label noise at 6% of the errors is not worth the time, at 30% it is.
LABEL_NOISE_WORTH_FIXING = 0.2


# -- reading a run's predictions ------------------------------------------------------------
class RunSplit:
    """One split of one run: its predictions, and (only when needed) its model and data."""

    def __init__(self, run, split: str):
        if split not in SPLITS:
            raise BadInput(f"unknown split {split!r}; one of {', '.join(SPLITS)}", key="--split")
        self.path = find_run(run)
        self.split = split
        summary_path = self.path / "summary.json"
        summary = read_json(summary_path) if summary_path.exists() else {}
        if split in summary.get("errors", {}) and summary["errors"][split] is None:
            raise self.no_such_split()

    def no_such_split(self) -> BadInput:
        return BadInput(f"the run has no {self.split} split", file=self.path, key="--split")

    @cached_property
    def model_and_dataset(self):
        from .api import load_model
        return load_model(self.path)

    @property
    def data(self):
        data = self.model_and_dataset[1].splits.get(self.split)
        if data is None:
            raise self.no_such_split()
        return data

    @cached_property
    def predictions(self) -> dict:
        path = self.path / "predictions" / f"{self.split}.npz"
        if not path.exists():
            return self.repredict()
        try:
            with np.load(path) as f:
                missing = [k for k in PREDICTION_ARRAYS if k not in f.files]
                if missing:
                    raise BadInput(f"missing arrays: {', '.join(missing)}", file=path)
                return {k: f[k] for k in PREDICTION_ARRAYS}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise BadInput(f"cannot read predictions: {err}", file=path)

    def repredict(self) -> dict:
        """Predictions of a run saved without them (older runs), from params.npz and the recipe."""
        from .api import prediction_arrays
        model = self.model_and_dataset[0]
        return prediction_arrays(model.predict_proba(self.data.x), model.loss, self.data)


# -- the analysis ---------------------------------------------------------------------------
@dataclass
class ErrorAnalysis:
    split: str
    error: float
    classes: list
    confusion_matrix: list  # rows true, columns predicted; multi-label: per label [[tn, fp], [fn, tp]]
    per_class: list
    errors: list            # {index, true, predicted, probability}, most confident first
    suspected_label_errors: list
    multi_label: bool = False
    # index -> the wrong (example, label) entries of that mistake (1 unless multi-label, whose
    # error counts entries: a tag's ceiling then removes entries, not examples)
    wrong_entries: dict = field(default_factory=dict)
    tags: list | None = None

    def to_json(self) -> dict:
        doc = {"split": self.split, "error": self.error, "classes": self.classes,
               "confusion_matrix": self.confusion_matrix, "per_class": self.per_class,
               "macro": metrics.macro_average(self.per_class),
               "weighted": metrics.weighted_average(self.per_class), "errors": self.errors}
        if self.tags is not None:
            doc["tags"] = self.tags
        doc["suspected_label_errors"] = self.suspected_label_errors
        return doc


def analyze(pred: dict, split: str) -> ErrorAnalysis:
    """Scores, ranked mistakes and suspected label errors of one split's predictions."""
    y_true, y_pred = np.asarray(pred["y_true"]), np.asarray(pred["y_pred"])
    probabilities = np.asarray(pred["probabilities"], dtype=np.float64)
    index = np.asarray(pred["index"]).astype(np.int64).reshape(-1)
    if probabilities.ndim == 3:  # a sequence output: each unmasked step is a token to classify
        present = y_true >= 0
        index = np.broadcast_to(index[:, None], y_true.shape)[present]
        y_true, y_pred, probabilities = y_true[present], y_pred[present], probabilities[present]
    if y_true.size and not np.all(np.mod(y_true, 1) == 0):
        raise BadInput(f"the {split} labels are not classes (a regression run?): error analysis "
                       "needs a classifier", key="--split")
    if len(index) == 0:
        raise BadInput(f"the {split} split has no examples", key="--split")
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        return _analyze_multi_label(y_true.astype(np.int64), y_pred.astype(np.int64),
                                    probabilities, index, split)
    y_true, y_pred = y_true.reshape(-1).astype(np.int64), y_pred.reshape(-1).astype(np.int64)
    if probabilities.ndim == 1 or probabilities.shape[1] == 1:
        p = probabilities.reshape(-1)
        probabilities = np.stack([1 - p, p], axis=1)  # a sigmoid's P(0), P(1)
    classes = list(range(probabilities.shape[1]))
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise BadInput(f"the {split} labels do not fit the {len(classes)} classes of the "
                       "probabilities", key="--split")
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probabilities[wrong, y_pred[wrong]]
    errors = _ranked([{"index": int(index[i]), "true": int(y_true[i]), "predicted": int(y_pred[i]),
                       "probability": float(c)} for i, c in zip(wrong, confidence)])
    suspects = suspected_label_errors(probabilities, y_true)
    return ErrorAnalysis(
        split=split, error=len(wrong) / len(index), classes=classes,
        confusion_matrix=metrics.confusion_matrix(y_true, y_pred, classes).tolist(),
        per_class=metrics.per_class(y_true, y_pred, classes), errors=errors,
        suspected_label_errors=[int(index[i]) for i in suspects],
        wrong_entries={e["index"]: 1 for e in errors})


def _analyze_multi_label(y_true, y_pred, p, index, split) -> ErrorAnalysis:
    present = y_true != -1
    wrong = present & (y_pred != y_true)
    # confidence in the value predicted, for each wrong entry: p where 1 was predicted, else 1 - p
    confidence = np.where(wrong, np.where(y_pred == 1, p, 1 - p), -np.inf).max(axis=1)
    errors, wrong_entries = [], {}
    for i in np.flatnonzero(wrong.any(axis=1)):
        errors.append({"index": int(index[i]), "true": np.flatnonzero(y_true[i] == 1).tolist(),
                       "predicted": np.flatnonzero(y_pred[i] == 1).tolist(),
                       "probability": float(confidence[i])})
        wrong_entries[int(index[i])] = int(wrong[i].sum())
    # each label is a binary task over the examples labelled for it
    flagged = {}
    for j in range(y_true.shape[1]):
        rows = np.flatnonzero(present[:, j])
        pj = np.stack([1 - p[rows, j], p[rows, j]], axis=1)
        for i in suspected_label_errors(pj, y_true[rows, j]):
            flagged[rows[i]] = min(flagged.get(rows[i], 1.0), pj[i, y_true[rows[i], j]])
    total = int(present.sum())
    return ErrorAnalysis(
        split=split, error=int(wrong.sum()) / total if total else 0.0,
        classes=list(range(y_true.shape[1])),
        confusion_matrix=metrics.multilabel_confusion(y_true, y_pred).tolist(),
        per_class=metrics.per_label(y_true, y_pred), errors=_ranked(errors),
        suspected_label_errors=[int(index[i]) for i in sorted(flagged, key=flagged.get)],
        multi_label=True, wrong_entries=wrong_entries)


def _ranked(errors: list) -> list:
    """Most confident mistakes first; ties by index, so the order is reproducible."""
    return sorted(errors, key=lambda e: (-e["probability"], e["index"]))


def suspected_label_errors(probabilities, y) -> np.ndarray:
    """Positions of examples whose given label looks wrong, least trusted label first.

    Confident learning's rule (Northcutt et al., 2021): each class j gets a threshold t_j, the
    mean probability the model gives class j over the examples labelled j (its average
    self-confidence). An example labelled y is a suspect when P(y) < t_y while some other
    class k gets P(k) >= t_k: the model is as sure of k as it usually is of a genuine k, and
    less sure of y than it usually is of a genuine y. Suspects are ranked by P(y), lowest first.
    Meaningful on held-out splits: on the training split the model has fit the labels.
    """
    c = probabilities.shape[1]
    thresholds = np.full(c, np.inf)  # a class nobody is labelled with is never confidently it
    for j in np.unique(y):
        thresholds[j] = probabilities[y == j, j].mean()
    rows = np.arange(len(y))
    self_confidence = probabilities[rows, y]
    confident = probabilities >= thresholds
    confident[rows, y] = False
    suspects = np.flatnonzero((self_confidence < thresholds[y]) & confident.any(axis=1))
    return suspects[np.argsort(self_confidence[suspects], kind="stable")]


# -- the tagging sheet ----------------------------------------------------------------------
def _label_text(label) -> str:
    return ";".join(map(str, label)) if isinstance(label, list) else str(label)


def sheet_text(errors: list) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SHEET_COLUMNS)
    for e in errors:
        writer.writerow([e["index"], _label_text(e["true"]), _label_text(e["predicted"]),
                         f"{e['probability']:.6g}", ""])
    return out.getvalue()


def is_tagged(path: Path) -> bool:
    """Whether the user has written in a sheet; a sheet we cannot read counts as theirs."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return any((row.get("tags") or "").strip() for row in csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return True


def write_sheet(path: Path, errors: list) -> bool:
    """Write the tagging sheet unless the user has tagged it already; whether it was written."""
    if path.exists() and is_tagged(path):
        return False
    atomic_write_text(path, sheet_text(errors))
    return True


def tally_tags(path, analysis: ErrorAnalysis) -> list:
    """The notes' error-analysis table from a tagged sheet: per tag, count, share, ceiling.

    Shares are of the sheet's rows, and each ceiling removes the tag's share of the error:
    with the sheet as written (every mistake) that is exactly error - count / m; a user who
    looked at a sample only (the notes' ~100 mistakes) deletes the other rows and the
    ceilings extrapolate from the sample.
    """
    path = Path(path)
    rows = _read_sheet(path, analysis)
    if not rows:
        raise BadInput("the sheet has no rows", file=path)
    entries = sum(analysis.wrong_entries[i] for i, _ in rows)
    counts, fixed = Counter(), Counter()
    for i, tags in rows:
        for tag in tags:
            counts[tag] += 1
            fixed[tag] += analysis.wrong_entries[i]
    # rounded so that 0.1 - 8/1000 prints as 0.092, not 0.09200000000000001
    return [{"tag": tag, "count": n, "fraction_of_errors": round(n / len(rows), 12),
             "ceiling_error": round(analysis.error * (1 - fixed[tag] / entries), 12)}
            for tag, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _read_sheet(path: Path, analysis: ErrorAnalysis) -> list:
    """[(index, tags)] of each row, checked against the split's mistakes."""
    seen = {}
    try:
        # utf-8-sig: a sheet saved by Excel as "CSV UTF-8" starts with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("index", "tags") if c not in (reader.fieldnames or [])]
            if missing:
                raise BadInput(f"missing column(s) {', '.join(missing)}; the sheet's columns are "
                               f"{','.join(SHEET_COLUMNS)}", file=path, line=1)
            for row in reader:
                line = reader.line_num
                index = _row_index(row["index"], path, line)
                if index not in analysis.wrong_entries:
                    raise BadInput(f"index {index} is not one of the {analysis.split} split's "
                                   "mistakes", file=path, line=line, key="index")
                if index in seen:
                    raise BadInput(f"index {index} is listed twice (also on line {seen[index][0]})",
                                   file=path, line=line, key="index")
                tags = dict.fromkeys(t.strip() for t in (row["tags"] or "").split(";") if t.strip())
                seen[index] = (line, list(tags))
    except OSError as err:
        raise BadInput(f"cannot read the sheet: {err.strerror}", file=path)
    except (UnicodeDecodeError, csv.Error) as err:
        raise BadInput(f"not a CSV text file: {err}", file=path)
    return [(i, tags) for i, (_, tags) in seen.items()]


def _row_index(text, path, line) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise BadInput(f"index {text!r} is not an integer", file=path, line=line, key="index")


def label_noise_note(tags: list) -> str | None:
    """The notes on incorrectly labelled data, for a `mislabeled` tag."""
    noise = [t for t in tags if t["tag"].lower() in LABEL_NOISE_TAGS]
    if not noise:
        return None
    t = noise[0]
    share = f"{t['fraction_of_errors']:.0%} of the mistakes are label noise ({t['tag']})"
    if t["fraction_of_errors"] >= LABEL_NOISE_WORTH_FIXING:
        return (f"{share}: a large share, worth fixing those labels (error at best "
                f"{t['ceiling_error']:.2%}). Fix dev and test together so they stay one "
                "distribution, and look at examples the model got right as well.")
    return (f"{share}: a small share; fixing them lowers the error to {t['ceiling_error']:.2%} "
            "at best, so other tags are the better use of time.")


def write_contact_sheet(path, run_split: RunSplit, errors: list) -> None:
    import yaml
    data = run_split.data
    data_cfg = (yaml.safe_load((run_split.path / "recipe.yaml").read_text()) or {}).get("data") or {}
    images = display_images(data.x[[e["index"] for e in errors]], data_cfg)
    names = run_split.model_and_dataset[1].class_names
    atomic_write_bytes(path, contact_sheet(images, [_caption(e, names) for e in errors]))


def _caption(error: dict, names) -> list:
    def label(v):
        if isinstance(v, list):
            return ";".join(label(u) for u in v) or "-"
        return str(names[v]) if names and v < len(names) else str(v)
    return [f"true {label(error['true'])}  pred {label(error['predicted'])}",
            f"p = {error['probability']:.3f}"]


# -- command-line front ends ----------------------------------------------------------------
def _analysis(run, split, tags) -> tuple[RunSplit, ErrorAnalysis]:
    run_split = RunSplit(run, split)
    analysis = analyze(run_split.predictions, split)
    if tags is not None:
        analysis.tags = tally_tags(tags, analysis)
    return run_split, analysis


def analyze_errors(run, split: str = "dev", tags=None) -> dict:
    """The JSON document of `dlcli analyze errors` (the Python API)."""
    return _analysis(run, split, tags)[1].to_json()


def errors_cli(run, split="dev", tags=None, sheet=None, top=20, as_json=False) -> int:
    from rich.console import Console
    from .detect.errors import dense_errors_cli
    code = dense_errors_cli(run, split, sheet, top, as_json)  # boxes or masks (dlcli/detect)
    if code is not None:
        return code
    run_split, analysis = _analysis(run, split, tags)
    console = Console(stderr=as_json)
    _render(analysis, top, console)
    sheet_path = run_split.path / "analysis" / f"{split}_errors.csv"
    if write_sheet(sheet_path, analysis.errors):
        console.print(f"wrote {sheet_path}: tag each mistake in its tags column (several "
                      f"separated by ';'), then run with --tags {sheet_path}")
    else:
        console.print(f"{sheet_path} is already tagged; left as it is")
    if sheet is not None and analysis.errors:
        write_contact_sheet(sheet, run_split, analysis.errors[:top])
        console.print(f"wrote {sheet}: the {min(top, len(analysis.errors))} most confident mistakes")
    elif sheet is not None:
        console.print(f"no mistakes on {split}: no contact sheet to draw")
    if as_json:
        print(json.dumps(analysis.to_json()))
    return 0


def _render(a: ErrorAnalysis, top: int, console) -> None:
    from .report import styled_table
    console.print(f"[bold]{a.split}[/bold] error {a.error:.2%} "
                  f"({len(a.errors)} mistaken examples)")
    if a.multi_label:
        cm = styled_table(title="per-label counts")
        for name in ("label", "TN", "FP", "FN", "TP"):
            cm.add_column(name, justify="right")
        for label, ((tn, fp), (fn, tp)) in zip(a.classes, a.confusion_matrix):
            cm.add_row(str(label), str(tn), str(fp), str(fn), str(tp))
    else:
        cm = styled_table(title="confusion matrix")
        cm.add_column("true \\ predicted", justify="right")
        for c in a.classes:
            cm.add_column(str(c), justify="right")
        for c, counts in zip(a.classes, a.confusion_matrix):
            cm.add_row(str(c), *(f"[bold]{n}[/bold]" if j == c else str(n)
                                 for j, n in zip(a.classes, counts)))
    console.print(cm)
    scores = styled_table(title="precision / recall / F1")
    for name in ("label" if a.multi_label else "class", "precision", "recall", "f1", "support"):
        scores.add_column(name, justify="right")
    for r in a.per_class:
        scores.add_row(str(r["class"]), *(f"{r[k]:.3f}" for k in metrics.SCORES), str(r["support"]))
    support = sum(r["support"] for r in a.per_class)
    for name, avg in (("macro", metrics.macro_average(a.per_class)),
                      ("weighted", metrics.weighted_average(a.per_class))):
        scores.add_row(name, *(f"{avg[k]:.3f}" for k in metrics.SCORES), str(support),
                       style="italic")
    console.print(scores)
    if a.errors:
        mistakes = styled_table(title=f"most confident mistakes (top {min(top, len(a.errors))} "
                               f"of {len(a.errors)})")
        for name in ("index", "true", "predicted", "probability"):
            mistakes.add_column(name, justify="right")
        for e in a.errors[:top]:
            mistakes.add_row(str(e["index"]), _label_text(e["true"]), _label_text(e["predicted"]),
                             f"{e['probability']:.3f}")
        console.print(mistakes)
    if a.tags is not None:
        _render_tags(a, console)
    if a.suspected_label_errors:
        shown = ", ".join(map(str, a.suspected_label_errors[:top]))
        more = len(a.suspected_label_errors) - top
        console.print(f"possible label errors, worth re-checking (the given label gets less "
                      f"probability than its class usually does, another class more): {shown}"
                      + (f" (+{more} more)" if more > 0 else ""))


def _render_tags(a: ErrorAnalysis, console) -> None:
    from .report import styled_table
    if not a.tags:
        console.print("no tags in the sheet yet")
        return
    table = styled_table(title=f"error analysis: {a.split} error {a.error:.2%}")
    table.add_column("tag")
    for name in ("count", "% of mistakes", "error if all fixed"):
        table.add_column(name, justify="right")
    best = min(a.tags, key=lambda t: t["ceiling_error"])
    for t in a.tags:
        table.add_row(t["tag"], str(t["count"]), f"{t['fraction_of_errors']:.1%}",
                      f"{t['ceiling_error']:.2%}", style="bold" if t is best else None)
    console.print(table)
    note = label_noise_note(a.tags)
    if note:
        console.print(note)


def bias_variance_cli(run, human_level_error=None, as_json=False) -> int:
    from rich.console import Console
    from . import report
    from .strategy import diagnose
    if human_level_error is not None and not 0 <= human_level_error < 1:
        raise BadInput(f"must be an error in [0, 1), got {human_level_error}",
                       key="--human-level-error")
    path = find_run(run)
    summary_path = path / "summary.json"
    if not summary_path.exists():
        raise BadInput("the run has no summary.json (did its training finish?)", file=path)
    summary = read_json(summary_path)
    human = summary.get("human_level_error") if human_level_error is None else human_level_error
    sizes = summary.get("sizes") or split_sizes(path)
    summary = {**summary, "human_level_error": human, "sizes": sizes,
               "diagnosis": diagnose(summary.get("errors") or {}, human, sizes)}
    report.errors_table(summary, Console(stderr=as_json))
    if as_json:
        print(json.dumps({k: summary[k] for k in ("errors", "sizes", "human_level_error", "diagnosis")}))
    return 0


def split_sizes(path: Path) -> dict:
    """Each split's example count from its predictions (runs saved before summary.json kept
    "sizes"); None where a split has no predictions."""
    sizes = {}
    for split in SPLITS:
        file = path / "predictions" / f"{split}.npz"
        try:
            with np.load(file) as f:
                sizes[split] = int(f["y_true"].shape[0])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            sizes[split] = None
    return sizes
