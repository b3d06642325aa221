"""What a person reads: progress, errors and diagnosis, learning curve, models and runs, with Rich.

Every function draws on the `console` it is given, so the caller decides stdout or stderr
(with `--json`, human output goes to stderr). One look throughout: bold left-aligned titles,
simple head rules, numbers right-aligned, errors as percentages with two decimals, "—" for
what does not exist.
"""

from __future__ import annotations

import math

import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .progress import TrainingProgress  # noqa: F401  (the face api.train draws on)
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


def _pct(x, sign=True) -> str:
    return NONE if x is None else f"{100 * x:.2f}%" if sign else f"±{100 * x:.2f}%"


def _num(x, digits=4) -> str:
    return NONE if x is None else f"{x:.{digits}g}"


# -- training ---------------------------------------------------------------------------------
def early_stopping_note(summary: dict, recipe, records=()) -> str | None:
    """When and why early stopping ended training, and which epoch's parameters were kept."""
    stopped = summary.get("stopped_early_at_epoch")
    cfg = recipe.training.early_stopping
    if not stopped or cfg is None:
        return None
    best = summary.get("best_epoch")
    value = next((r.get(cfg.metric) for r in records if r.get("epoch") == best), None)
    shown = "" if value is None else \
        f" {_pct(value)}" if cfg.metric.endswith("_error") else f" {value:.4g}"
    why = (f"{cfg.metric} did not improve{f' by more than {cfg.min_delta:g}' if cfg.min_delta else ''}"
           f" for {cfg.patience} epoch{'s' if cfg.patience > 1 else ''} (best{shown} at epoch {best})")
    kept = f"kept epoch {best}'s parameters (restore_best)" if cfg.restore_best and best else \
        f"kept the last epoch's parameters (epoch {stopped}; restore_best: false)"
    return f"Early stopping at epoch {stopped} of {recipe.training.epochs}: {why}; {kept}."


# -- errors and diagnosis ---------------------------------------------------------------------
def errors_table(summary: dict, console: Console) -> None:
    """The course's staircase: each gap sits between the two errors it subtracts, with each
    split's size and each error's and gap's noise (two standard errors); the focus is
    highlighted and its basic-recipe advice listed under the table, a gap within its noise is
    marked "not significant"."""
    errors = summary.get("errors") or {}
    human = summary.get("human_level_error")
    sizes = summary.get("sizes") or {}
    diagnosis = summary.get("diagnosis") or {}
    if "noise" not in diagnosis:  # a summary written before the noise was part of it
        diagnosis = diagnose(errors, human, sizes)
    noise = diagnosis.get("noise") or {}
    focus = diagnosis.get("focus")
    from_test = diagnosis.get("variance_from") == "test"
    table = _table("Errors and diagnosis", ("split", L), ("n", R), ("error", R), ("gap", R),
                   ("±2 SE", R), ("", L))
    _row(table, "human-level", "", _pct(human), "", "exact" if human is not None else "")
    for split, gap in zip(SPLITS, GAPS):
        value = diagnosis.get(gap)
        mark = ""
        if gap == focus:
            mark = "◀ focus"
        elif value is not None and value > 0 and noise.get(gap) is not None and value <= noise[gap]:
            mark = "not significant"
        label = GAP_LABELS[gap] + (" (test)" if gap == "variance" and from_test else "")
        _row(table, "  " + label, "", "", _pct(value), _pct(noise.get(gap), sign=False), mark,
             style=FOCUS if gap == focus else "dim")
        _row(table, SPLITS[split], _count(sizes.get(split)), _pct(errors.get(split)), "",
             _pct(_two_se(errors.get(split), sizes.get(split)), sign=False))
    console.print(table)
    for note in diagnosis_notes(summary, diagnosis):
        console.print(Text(note))
    if focus is None:
        return
    console.print(Text.assemble("Focus: ", (GAP_LABELS[focus], FOCUS), " — the basic recipe:"))
    for advice in diagnosis.get("advice") or []:
        console.print(Text(f"  • {advice}"))


def diagnosis_notes(summary: dict, diagnosis: dict) -> list[str]:
    """What the table cannot say by itself: which gaps are unknown and why, what stood in for
    a missing split, why there is no focus."""
    errors = summary.get("errors") or {}
    notes = []
    known = [g for g in GAPS if diagnosis.get(g) is not None]
    if not known:
        return ["No gap to diagnose: it takes two of human-level, train, train-dev, dev and test."]
    if summary.get("human_level_error") is None and errors.get("train") is not None:
        notes.append("Avoidable bias: unknown without a human-level error (a proxy for Bayes "
                     "error): set evaluation.human_level_error in the recipe, or run dlcli "
                     "analyze bias-variance RUN --human-level-error 0.01.")
    if diagnosis.get("variance_from") == "test":
        notes.append("Variance (test): test - train, the test set standing in for a dev set; "
                     "choosing a model by its test error makes that error optimistic: carve a "
                     "dev set with data.dev: 0.2.")
    if diagnosis.get("focus") == "avoidable_bias" and summary.get("stopped_early_at_epoch"):
        notes.append(f"Early stopping ended training at epoch {summary['stopped_early_at_epoch']}: "
                     "to train longer, raise training.early_stopping.patience (or watch "
                     "train_cost) as well as training.epochs.")
    if diagnosis.get("focus") is None:
        notes.append("No focus: no gap is both positive and larger than its noise (±2 SE: two "
                     "standard errors of its two errors). More examples in the smaller split "
                     "narrow the noise.")
    return notes


def _two_se(error, n):
    from .strategy import standard_error
    se = standard_error(error, n)
    return None if se is None else 2 * se


def _count(n) -> str:
    return NONE if n is None else f"{n:,}"


def metrics_table(metrics: dict, console: Console) -> None:
    """Precision, recall, F1 and accuracy per split (summary.json's "metrics"); a multi-class
    run's are macro averages, followed by the per-class scores of one split (dev, else test,
    else train)."""
    per_class = {s: m["per_class"] for s, m in metrics.items() if (m or {}).get("per_class")}
    title = "Metrics (macro averages over the classes)" if per_class else "Metrics"
    table = _table(title, ("split", L), ("precision", R), ("recall", R), ("F1", R), ("accuracy", R))
    order = [s for s in SPLITS if s in metrics] + [s for s in metrics if s not in SPLITS]
    for split in order:
        m = metrics[split] or {}
        _row(table, SPLITS.get(split, split),
             *(_pct(m.get(k)) for k in ("precision", "recall", "f1", "accuracy")))
    console.print(table)
    split = next((s for s in ("dev", "test", "train", *per_class) if s in per_class), None)
    if split is not None:
        _per_class_table(per_class[split], SPLITS.get(split, split), console)


def _per_class_table(rows: list[dict], split: str, console: Console) -> None:
    table = _table(f"Per class ({split})", ("class", L), ("precision", R), ("recall", R),
                   ("F1", R), ("support", R))
    table.columns[0].overflow = "fold"
    table.columns[0].max_width = 30  # a long class name wraps rather than pushing numbers off
    for row in rows:
        name = row.get("name")
        label = str(row["class"]) if name in (None, str(row["class"])) else f"{row['class']} {name}"
        _row(table, label, *(_pct(row.get(k)) for k in ("precision", "recall", "f1")),
             f"{row.get('support', 0):,}")
    console.print(table)


def sequence_table(sequence_metrics: dict, console: Console) -> None:
    """summary.json's "sequence_metrics": per split, the sequence error, the perplexity, its
    log (the loss per token, what compares language models) and BLEU."""
    table = _table("Sequences", ("split", L), ("sequence error", R), ("perplexity", R),
                   ("loss per token", R), ("BLEU", R))
    for split, m in sequence_metrics.items():
        if m:
            p = m.get("perplexity")
            _row(table, SPLITS.get(split, split), _pct(m.get("sequence_error")), _num(p),
                 _num(math.log(p) if p else None), _num(m.get("bleu")))
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


FOCUS_SHORT = {"avoidable_bias": "bias", "variance": "variance", "data_mismatch": "mismatch",
               "dev_overfitting": "dev overfit"}


def runs_table(runs: list[dict], console: Console) -> None:
    """One row per run directory: each dict is its summary.json plus `run`, the directory name
    (a search's row, `kind: "search"`, has its trial count as status and its best trial's
    errors). Fits the console: seconds go first, then epochs, then the long focus names."""
    def focus_of(run, short):
        if run.get("kind") == "search":
            best = run.get("best")
            return f"best #{best['trial']} of {run.get('trials', 0)}" if best else NONE
        focus = (run.get("diagnosis") or {}).get("focus")
        return (FOCUS_SHORT if short else GAP_LABELS).get(focus, NONE)

    def status_of(run):
        if run.get("kind") == "search":
            return Text(f"{run.get('trials', 0)} trials", style="cyan")
        status = run.get("status") or NONE
        return Text(status, style=STATUS_STYLES.get(status, "dim"))

    columns = {  # header: (justify, cell of a run)
        "run": (L, lambda r, short: r["run"]),
        "status": (L, lambda r, short: status_of(r)),
        "epochs": (R, lambda r, short: NONE if r.get("kind") == "search" else str(r.get("epochs", NONE))),
        "seconds": (R, lambda r, short: _seconds(r.get("seconds"))),
        **{s: (R, lambda r, short, s=s: _pct((r.get("errors") or {}).get(s))) for s in ("train", "dev", "test")},
        "focus": (L, focus_of),
    }
    shown, short = list(columns), False

    def build():
        table = _table("Runs", *((name, columns[name][0]) for name in shown), pad_edge=False,
                       collapse_padding=True)
        # the run name is what the user types next (`dlcli runs show NAME`): never cut it
        table.columns[0].min_width = max((len(r["run"]) for r in runs), default=3)
        for column in table.columns[1:]:
            column.overflow = "fold"  # a last resort: wrapped in its cell, never lost
        for run in runs:
            cells = [columns[name][1](run, short) for name in shown]
            if "status" not in shown:  # the status lives on as the run name's colour
                cells[0] = Text(run["run"], style=status_of(run).style)
            _row(table, *cells)
        return table

    table = build()
    for drop in ("seconds", "epochs", "short focus", "status"):
        if _width(table) <= console.width:
            break
        if drop == "short focus":
            short = True
        else:
            shown.remove(drop)
        table = build()
    console.print(table)


def _width(renderable) -> int:
    """The width a renderable takes when nothing limits it (its padding included)."""
    import io

    from rich.measure import Measurement
    probe = Console(width=1000, file=io.StringIO(), color_system=None)
    return Measurement.get(probe, probe.options, renderable).maximum


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
