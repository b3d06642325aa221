"""What `dlcli search` shows: the live table of trials, the configurations of a dry run, the
final ranking and one text scatter per searched key. It draws SearchResults it is handed and
computes nothing (moved out of search.py, which runs the search)."""

from __future__ import annotations

from .search import SearchResult, _cell  # noqa: F401
from .search_space import Dim, Trial, _fmt, best_of, ranked  # noqa: F401


def _table(result: SearchResult, rows: list, title: str, status_of=None, width=None):
    """Trials as rows: their values, then (with `status_of`) how each went. Given the
    terminal's `width`, a table too wide for it is split, by columns, into tables that fit,
    each starting with the trial number (a table broken into one-letter columns is unreadable)."""
    from rich.console import Group

    from .report import _width, styled_table
    outcome_columns = (result.settings.metric, "train", "dev", "status", "s") if status_of else ()
    names = short_names([d.key for d in result.dims])
    headers = ["trial", "round" if status_of else "seed", *names, *outcome_columns]
    best = result.best["trial"] if result.best else None
    cells = []
    for t in rows:
        row = [str(t.number), str(t.round if status_of else t.seed),
               *(_fmt(t.values[d.key]) for d in result.dims)]
        if status_of:
            r = result.records.get(t.number) or {}
            errors = r.get("errors") or {}
            row += [_cell(r.get("metric")), _cell(errors.get("train")), _cell(errors.get("dev")),
                    status_of(t, r), _cell(r.get("seconds"))]
        cells.append((row, "bold green" if t.number == best else None))

    def build(columns, part_title):
        table = styled_table(part_title)
        for k in columns:
            table.add_column(headers[k], justify="left" if headers[k] == "status" else "right",
                             overflow="fold")
        for row, style in cells:
            table.add_row(*(row[k] for k in columns), style=style)
        return table

    everything = list(range(len(headers)))
    whole = build(everything, title)
    if width is None or _width(whole) <= width:
        return whole
    parts, current = [], [0]
    for k in everything[1:]:
        if len(current) > 1 and _width(build(current + [k], title)) > width:
            parts.append(current)
            current = [0]
        current.append(k)
    parts.append(current)
    from rich.text import Text
    pieces = []
    for i, cols in enumerate(parts):  # the title above, not in, a table narrower than it
        pieces += [Text(f"{title} ({i + 1}/{len(parts)})", style="bold"), build(cols, None)]
    return Group(*pieces)


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
        self.live.update(_table(result, rows, title, status, self.live.console.width))


class TrialLog:
    """Off a terminal (a file, a CI log), a plain line per finished trial instead of the live
    table, as `train` prints a line per epoch."""

    def __init__(self, console):
        self.console, self.shown = console, set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, result: SearchResult, running: set) -> None:
        for number, r in result.records.items():
            if number in self.shown:
                continue
            self.shown.add(number)
            errors = r.get("errors") or {}
            parts = [f"trial {number} ({len(result.records)}/{len(result.trials)} finished)",
                     r.get("status") or "?"]
            if r.get("metric") is not None:
                parts.append(f"{result.settings.metric} {_fmt(r['metric'])}")
            parts += [f"{k} {_fmt(errors[k])}" for k in ("train", "dev") if errors.get(k) is not None]
            if result.best:
                parts.append(f"best: trial {result.best['trial']}")
            self.console.print(" - ".join(parts), markup=False, highlight=False, soft_wrap=True)


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
                         "(round 0; later rounds follow its results)", width=console.width))


def final_report(result: SearchResult, console) -> None:
    records = list(result.records.values())
    order = {r["trial"]: k for k, r in enumerate(ranked(records, result.settings))}
    finished = [t for t in result.trials if t.number in result.records]
    finished.sort(key=lambda t: (order.get(t.number, len(order)), t.number))
    console.print(_table(result, finished, "trials, best first", lambda t, r: r["status"],
                         console.width))
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
