"""What a person reads: progress, errors and diagnosis, learning curve, models and runs, with Rich.

Every function draws on the `console` it is given, so the caller decides stdout or stderr
(with `--json`, human output goes to stderr). One look throughout: bold left-aligned titles,
simple head rules, numbers right-aligned, errors as percentages with two decimals, "—" for
what does not exist.
"""

from __future__ import annotations

import math
import time

import yaml
from rich import box
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from .strategy import GAPS, diagnose

SPLITS = {"train": "train", "train_dev": "train-dev", "dev": "dev", "test": "test"}
GAP_LABELS = {"avoidable_bias": "avoidable bias", "variance": "variance",
              "data_mismatch": "data mismatch", "dev_overfitting": "overfitting to dev"}
NONE = "—"
BEST = "bold green"
FOCUS = "bold yellow"
STATUS_STYLES = {"completed": "green", "interrupted": "yellow", "diverged": "red"}
L, R = "left", "right"


def styled_table(title=None, **kwargs) -> Table:
    """The one table style of every command's output."""
    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                 header_style="bold", **kwargs)


def _table(title, *columns, **kwargs) -> Table:
    """A table in the house style; `columns` are (header, justify) pairs."""
    table = styled_table(title, **kwargs)
    for header, justify in columns:
        table.add_column(Text(header), justify=justify)
    return table


def _row(table: Table, *cells, style=None) -> None:
    """Add a row; strings become plain Text, so a run name or a setting such as
    [flip_horizontal] is never read as Rich markup."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells), style=style)


def _pct(x) -> str:
    return NONE if x is None else f"{100 * x:.2f}%"


def _num(x, digits=4) -> str:
    return NONE if x is None else f"{x:.{digits}g}"


# -- training ---------------------------------------------------------------------------------
class TrainingProgress:
    """A progress bar over the epochs: cost, learning rate, train and dev error, elapsed, ETA.

    `update` only keeps the record and hands it to Rich at most every REFRESH seconds, so a
    thousand tiny epochs a second cost nothing; Rich redraws from its own thread.
    """

    REFRESH = 0.1

    def __init__(self, epochs: int, console: Console, quiet: bool = False):
        self.epochs, self.console, self.quiet = epochs, console, quiet
        self._progress = None
        self._pending = None
        self._pushed_at = -math.inf

    def __enter__(self):
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=self.console, refresh_per_second=1 / self.REFRESH)
            self._task = self._progress.add_task("train", total=self.epochs, stats="")
            self._progress.start()
        return self

    def update(self, epoch: int, record: dict) -> None:
        if self._progress is None:
            return
        self._pending = (epoch, record)
        if time.monotonic() - self._pushed_at >= self.REFRESH or epoch >= self.epochs:
            self._push()

    def _push(self):
        epoch, record = self._pending
        self._progress.update(self._task, completed=epoch, stats=_epoch_stats(record))
        self._pending, self._pushed_at = None, time.monotonic()

    def __exit__(self, *exc):
        if self._progress is not None:
            if self._pending is not None:
                self._push()
            self._progress.stop()
        return False


def _epoch_stats(record: dict) -> str:
    parts = [f"cost {record['cost']:.4f}", f"lr {record['learning_rate']:.3g}",
             f"train {_pct(record.get('train_error'))}"]
    if record.get("dev_error") is not None:
        parts.append(f"dev {_pct(record['dev_error'])}")
    return "  ".join(parts)


# -- errors and diagnosis ---------------------------------------------------------------------
def errors_table(summary: dict, console: Console) -> None:
    """The course's staircase: each gap sits between the two errors it subtracts; the focus
    is highlighted and its basic-recipe advice listed under the table."""
    errors = summary.get("errors") or {}
    human = summary.get("human_level_error")
    diagnosis = summary.get("diagnosis") or diagnose(errors, human)
    focus = diagnosis.get("focus")
    table = _table("Errors and diagnosis", ("split", L), ("error", R), ("gap", L), ("", R), ("", L))
    _row(table, "human-level", _pct(human))
    for split, gap in zip(SPLITS, GAPS):
        is_focus = gap == focus
        _row(table, "", "", GAP_LABELS[gap], _pct(diagnosis.get(gap)), "◀ focus" if is_focus else "",
             style=FOCUS if is_focus else "dim")
        _row(table, SPLITS[split], _pct(errors.get(split)))
    console.print(table)
    if focus is None:
        console.print("No gap to diagnose: it takes two of human-level, train, train-dev, dev and test.")
        return
    console.print(Text.assemble("Focus: ", (GAP_LABELS[focus], FOCUS), " — the basic recipe:"))
    for advice in diagnosis.get("advice") or []:
        console.print(Text(f"  • {advice}"))


def metrics_table(metrics: dict, console: Console) -> None:
    """Precision, recall, F1 and accuracy per split (summary.json's "metrics")."""
    table = _table("Metrics", ("split", L), ("precision", R), ("recall", R), ("F1", R), ("accuracy", R))
    order = [s for s in SPLITS if s in metrics] + [s for s in metrics if s not in SPLITS]
    for split in order:
        m = metrics[split] or {}
        _row(table, SPLITS.get(split, split),
             *(_pct(m.get(k)) for k in ("precision", "recall", "f1", "accuracy")))
    console.print(table)


# -- learning curve ---------------------------------------------------------------------------
# the dot bit of each (row, column) inside a braille cell of 4 rows x 2 columns
BRAILLE_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def learning_curve(costs: list[float], console: Console, width: int = 60, height: int = 12,
                   log: bool | None = None) -> None:
    """Cost per epoch in braille. `log=None` picks a log y-axis where the costs span two
    decades or more; non-finite costs are left out."""
    points = [(epoch, c) for epoch, c in enumerate(costs, start=1) if c is not None and math.isfinite(c)]
    if not points:
        console.print("Learning curve: no finite cost to draw.")
        return
    lo, hi = min(c for _, c in points), max(c for _, c in points)
    if log is None:
        log = lo > 0 and hi >= 100 * lo
    log = log and lo > 0  # a cost of 0 has no logarithm
    scale = math.log10 if log else float
    labels = (_num(hi), _num(lo))
    gutter = max(map(len, labels))
    width = max(8, min(width, console.width - gutter - 2))

    first, last = points[0][0], points[-1][0]
    x_max, y_max = 2 * width - 1, 4 * height - 1
    top, span = scale(hi), scale(hi) - scale(lo)

    def pixel(epoch, cost):
        x = 0 if last == first else round((epoch - first) * x_max / (last - first))
        y = y_max // 2 if span == 0 else round((top - scale(cost)) * y_max / span)
        return x, y

    cells = [[0] * width for _ in range(height)]
    previous = None
    for epoch, cost in points:
        current = pixel(epoch, cost)
        for x, y in _segment(previous or current, current):
            cells[y // 4][x // 2] |= BRAILLE_DOTS[y % 4][x % 2]
        previous = current

    title = "Learning curve (cost per epoch" + (", log scale)" if log else ")")
    console.print(Text(title, style="bold"))
    for row, bits in enumerate(cells):
        label = labels[0] if row == 0 else labels[1] if row == height - 1 else ""
        tick = "┤" if label else "│"
        curve = "".join(chr(0x2800 + b) for b in bits)
        console.print(Text.assemble((f"{label:>{gutter}} {tick}", "dim"), (curve, "cyan")),
                      no_wrap=True, overflow="crop")
    console.print(Text(" " * gutter + " └" + "─" * width, style="dim"), no_wrap=True, overflow="crop")
    left, right = f"epoch {first}", str(last)
    console.print(Text(" " * (gutter + 2) + left + right.rjust(width - len(left)), style="dim"),
                  no_wrap=True, overflow="crop")


def _segment(a, b):
    """The pixels of a straight line from a to b, both ends included."""
    steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
    return [(round(a[0] + (b[0] - a[0]) * k / steps), round(a[1] + (b[1] - a[1]) * k / steps))
            for k in range(steps + 1)]


# -- models and runs --------------------------------------------------------------------------
def model_summary(rows: list[dict], total: int, console: Console, title: str = "Model") -> None:
    """Like Keras' summary: index, layer, output shape (m = the batch), parameters, total."""
    table = _table(title, ("#", R), ("layer", L), ("output shape", L), ("parameters", R), show_footer=True)
    for row in rows:
        shape = "(" + ", ".join(["m", *map(str, row["output_shape"] or ())]) + ")"
        _row(table, str(row["index"]), row["layer"], shape, f"{row['parameters']:,}")
    table.columns[1].footer = "total"
    table.columns[3].footer = f"{total:,}"
    console.print(table)


def runs_table(runs: list[dict], console: Console) -> None:
    """One row per run directory: each dict is its summary.json plus `run`, the directory name."""
    table = _table("Runs", ("run", L), ("status", L), ("epochs", R), ("seconds", R),
                   ("train", R), ("dev", R), ("test", R), ("focus", L))
    # the run name is what the user types next (`dlcli runs show NAME`): never cut it
    table.columns[0].min_width = max((len(r["run"]) for r in runs), default=3)
    for run in runs:
        errors = run.get("errors") or {}
        focus = (run.get("diagnosis") or {}).get("focus")
        status = run.get("status") or NONE
        _row(table, run["run"], Text(status, style=STATUS_STYLES.get(status, "dim")),
             str(run.get("epochs", NONE)), _seconds(run.get("seconds")),
             *(_pct(errors.get(s)) for s in ("train", "dev", "test")), GAP_LABELS.get(focus, NONE))
    console.print(table)


def _seconds(s) -> str:
    return NONE if s is None else f"{s:.1f}"


KEY_SETTINGS = ("seed", "dtype", "model.init", "loss", "regularization.l2", "optimizer.name",
                "optimizer.learning_rate", "optimizer.decay.schedule", "training.epochs",
                "training.batch_size", "evaluation.human_level_error")


def run_details(summary: dict, recipe_text: str, metrics_records: list[dict], console: Console) -> None:
    """`dlcli runs show`: the run at a glance, its key settings, errors and diagnosis, metrics,
    satisficing metrics and the learning curve."""
    recipe = yaml.safe_load(recipe_text) or {}
    flat = _flatten(recipe)
    facts = _table(summary.get("name") or "Run", ("", L), ("", L), show_header=False)
    status = summary.get("status") or NONE
    _row(facts, "status", Text(status, style=STATUS_STYLES.get(status, "dim")))
    if summary.get("diverged_at_epoch") is not None:
        _row(facts, "diverged at", f"epoch {summary['diverged_at_epoch']}")
    _row(facts, "epochs", str(summary.get("epochs", NONE)))
    _row(facts, "seconds", _seconds(summary.get("seconds")))
    if summary.get("examples_per_second") is not None:
        _row(facts, "examples/s", f"{summary['examples_per_second']:,.0f}")
    if summary.get("parameters") is not None:
        _row(facts, "parameters", f"{summary['parameters']:,}")
    layers = (recipe.get("model") or {}).get("layers") or []
    if layers:
        _row(facts, "layers", " → ".join(_layer_brief(spec) for spec in layers))
    for key in KEY_SETTINGS:
        if key in flat:
            _row(facts, key, _setting(flat[key]))
    console.print(facts)
    errors_table(summary, console)
    if summary.get("metrics"):
        metrics_table(summary["metrics"], console)
    if summary.get("detection") or summary.get("segmentation"):
        from .detect.render import dense_tables
        dense_tables(summary, console)
    if summary.get("satisficing"):
        _satisficing_table(summary["satisficing"], console)
    if metrics_records:
        learning_curve([r.get("cost") for r in metrics_records], console)


def _satisficing_table(satisficing: dict, console: Console) -> None:
    table = _table("Satisficing", ("metric", L), ("value", R), ("max", R), ("met", L))
    for name, s in satisficing.items():
        met = s.get("met")
        _row(table, name, _num(s.get("value")), _num(s.get("max")),
             Text("yes", style="green") if met else Text("no", style="red") if met is False else NONE)
    console.print(table)


def _layer_brief(spec) -> str:
    if not isinstance(spec, dict):
        return str(spec)
    size = spec.get("units", spec.get("filters"))
    args = [str(a) for a in (size, spec.get("activation")) if a not in (None, "linear")]
    return spec.get("type", "?") + (f"({', '.join(args)})" if args else "")


def compare_table(runs: list[tuple[str, dict, dict]], console: Console) -> None:
    """Runs side by side: the recipe settings that differ, then status, errors and gaps, the
    best value of each row highlighted (lowest error and time, the gap nearest zero)."""
    names = [name for name, _, _ in runs]
    table = _table("Comparison", ("", L), *((name, R) for name in names))
    for column in table.columns[1:]:
        column.overflow = "fold"  # a long run name wraps rather than losing its end
    flats = [_flatten(recipe) for _, _, recipe in runs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat if k != "name"))
    differing = [k for k in keys if len({repr(f[k]) if k in f else None for f in flats}) > 1]
    for key in differing:
        _row(table, key, *(_setting(f[key]) if key in f else NONE for f in flats))
    if not differing:
        _row(table, Text("same recipe settings", style="dim"), *[""] * len(runs))
    table.add_section()

    summaries = [summary for _, summary, _ in runs]
    _row(table, "status", *(s.get("status") or NONE for s in summaries))
    _row(table, "epochs", *(str(s.get("epochs", NONE)) for s in summaries))
    _best_row(table, "seconds", [s.get("seconds") for s in summaries], _seconds, lambda v: v)
    table.add_section()
    _row(table, "human-level", *(_pct(s.get("human_level_error")) for s in summaries))
    for split, label in SPLITS.items():
        _best_row(table, label, [(s.get("errors") or {}).get(split) for s in summaries], _pct, lambda v: v)
    table.add_section()
    diagnoses = [s.get("diagnosis") or diagnose(s.get("errors") or {}, s.get("human_level_error"))
                 for s in summaries]
    for gap in GAPS:
        _best_row(table, GAP_LABELS[gap], [d.get(gap) for d in diagnoses], _pct, abs)
    _row(table, "focus", *(GAP_LABELS.get(d.get("focus"), NONE) for d in diagnoses))
    console.print(table)


def _best_row(table, label, values, fmt, badness) -> None:
    """A row whose best (least `badness`) values are highlighted, when the values differ."""
    known = [badness(v) for v in values if v is not None]
    best = min(known) if len(set(known)) > 1 else None
    _row(table, label, *(Text(fmt(v), style=BEST if v is not None and badness(v) == best else "")
                         for v in values))


def _flatten(value, prefix="") -> dict:
    """Dotted keys down to the leaves, list items by index: model.layers.1.units."""
    if isinstance(value, (dict, list)) and value:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        flat = {}
        for key, item in items:
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _setting(value) -> str:
    """A recipe value as YAML writes it (null, true, 0.001)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()
