"""Training progress, as a person reads it in a terminal or in a log file.

In a terminal: one live line, redrawn at most every REFRESH seconds, that moves within an
epoch (batches done, examples/s) and fits the terminal's width: the least useful parts go
first (learning rate, examples/s, batches), never the epoch count, elapsed time and ETA.
Elsewhere (a file, a CI log): plain lines, one per epoch as Keras' `verbose=2` prints them,
at most one per LOG_EVERY seconds once a run has more than LOG_ALL epochs (the first and last
epochs always print).
"""

from __future__ import annotations

import math
import sys
import time

from rich.console import Console
from rich.progress import Progress, TextColumn


def clock(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour on; "?" while unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _pct(x) -> str:
    return f"{100 * x:.2f}%"


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x < 1e5 else f"{x / 1e3:,.0f}k"


def record_parts(record: dict | None) -> list[tuple[int, str]]:
    """(priority, text) of an epoch's numbers; a higher priority number goes first when the
    line is too wide."""
    if not record:
        return []
    parts = [(1, f"cost {record['cost']:.4f}")]
    if record.get("train_error") is not None:
        parts.append((2, f"train {_pct(record['train_error'])}"))
    if record.get("dev_error") is not None:
        parts.append((2, f"dev {_pct(record['dev_error'])}"))
    if record.get("clipped"):  # optimizer.clip changed the gradients of that many steps
        parts.append((3, f"clipped {record['clipped']}"))
    parts.append((6, f"lr {record['learning_rate']:.3g}"))
    return parts


def live_line(epoch: int, epochs: int, fraction: float, elapsed: float, record: dict | None,
              batch: tuple | None, width: int) -> str:
    """The terminal's progress line: `epoch 12/200 ━━━━╸    0:03<0:20 cost ... train ... dev ...`,
    plus `batch 37/120 1,234 ex/s` within an epoch, cut to `width`. `batch` is (examples
    done, examples in the epoch, examples/s, steps done, examples per step)."""
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
    head = f"epoch {epoch}/{epochs}"
    times = f"{clock(elapsed)}<{clock(eta)}"
    parts = [*record_parts(record)]
    if batch is not None:
        done, m, rate, steps, per_step = batch
        total = -(-m // max(per_step, 1))
        parts.append((4, f"batch {steps}/{total}"))
        if rate:
            parts.append((5, f"{_rate(rate)} ex/s"))
    min_bar = 8

    def used(ps):
        return len(head) + 1 + 1 + len(times) + sum(1 + len(t) for _, t in ps)

    while parts and used(parts) + min_bar > width:
        worst = max(p for p, _ in parts)
        last = max(i for i, (p, _) in enumerate(parts) if p == worst)
        parts.pop(last)
    bar_width = max(min_bar, min(30, width - used(parts)))
    filled = fraction * bar_width
    whole = int(filled)
    bar = "━" * whole + ("╸" if filled - whole >= 0.5 and whole < bar_width else "")
    bar = bar.ljust(bar_width)
    line = " ".join([head, bar, times, *(t for _, t in parts)])
    return line[:width]


def log_line(epoch: int, epochs: int, elapsed: float, record: dict, rate: float | None,
             width: int = 80) -> str:
    """A plain line for a log: `epoch 12/200 - 0:03 - cost 0.1234 - train 5.33% - ...`, the
    least useful parts (learning rate, examples/s) left out where it would pass `width`."""
    parts = [(0, f"epoch {epoch}/{epochs}"), (0, clock(elapsed)), *record_parts(record)]
    if rate:
        parts.append((5, f"{_rate(rate)} ex/s"))
    while len(" - ".join(t for _, t in parts)) > width and max(p for p, _ in parts) > 0:
        worst = max(p for p, _ in parts)
        parts.pop(max(i for i, (p, _) in enumerate(parts) if p == worst))
    return " - ".join(t for _, t in parts)


class TrainingProgress:
    """Progress over the epochs: a live line in a terminal, plain lines elsewhere.

    `update` (once per epoch) and `batch` (once per step) only keep the numbers and redraw
    at most every REFRESH seconds, so a thousand tiny epochs a second cost nothing.
    """

    REFRESH = 0.1
    LOG_ALL = 100  # up to this many epochs, a log gets every one
    LOG_EVERY = 1.0

    def __init__(self, epochs: int, console: Console, quiet: bool = False, live: bool | None = None):
        self.epochs, self.console, self.quiet = epochs, console, quiet
        self.live = console.is_terminal if live is None else live
        self._progress = None
        self._record, self._epoch, self._batch = None, 0, None
        self._started = self._epoch_started = time.monotonic()
        self._examples_in_epoch = 0
        self._rate = None
        self._pushed_at = self._logged_at = -math.inf
        self._dirty = False
        self._logged_epoch = None

    def __enter__(self):
        self._started = self._epoch_started = time.monotonic()
        if not self.quiet and self.live:
            self._progress = Progress(TextColumn("{task.fields[line]}", markup=False),
                                      console=self.console, refresh_per_second=1 / self.REFRESH)
            self._task = self._progress.add_task("train", total=self.epochs, line=self._line())
            self._progress.start()
        return self

    # -- events ---------------------------------------------------------------------------
    def batch(self, epoch: int, done: int, m: int) -> None:
        """`done` of the epoch's `m` training examples have been through a step."""
        now = time.monotonic()
        if self._batch is None or done < self._examples_in_epoch:  # a new epoch's first step
            self._steps, self._per_step = 0, done
        self._steps += 1
        self._examples_in_epoch = done
        seconds = now - self._epoch_started
        rate = done / seconds if seconds > 0 else None
        self._batch = (done, m, rate, self._steps, self._per_step)
        self._dirty = True
        if self._progress is not None and now - self._pushed_at >= self.REFRESH:
            self._push(now)

    def update(self, epoch: int, record: dict) -> None:
        now = time.monotonic()
        if self._batch is not None and self._batch[2]:
            self._rate = self._batch[2]
        self._epoch, self._record, self._batch = epoch, record, None
        self._examples_in_epoch, self._epoch_started = 0, now
        self._dirty = True
        if self.quiet:
            return
        if self._progress is None:
            if (epoch <= 1 or epoch >= self.epochs or self.epochs <= self.LOG_ALL
                    or now - self._logged_at >= self.LOG_EVERY):
                self._log(now)
        elif now - self._pushed_at >= self.REFRESH or epoch >= self.epochs:
            self._push(now)

    def stopping(self, message: str) -> None:
        """Say at once why training stops (Ctrl-C): on stderr, after the live line."""
        self._close()
        print(f"dlcli: {message}", file=sys.stderr, flush=True)

    # -- drawing --------------------------------------------------------------------------
    def _fraction(self) -> float:
        within = self._batch[0] / max(self._batch[1], 1) if self._batch else 0.0
        return min(1.0, (self._epoch + within) / max(self.epochs, 1))

    def _line(self, now=None) -> str:
        now = time.monotonic() if now is None else now
        shown = min(self._epoch + 1, self.epochs) if self._batch else self._epoch
        return live_line(shown, self.epochs, self._fraction(), now - self._started, self._record,
                         self._batch, self.console.width - 1)

    def _push(self, now):
        self._progress.update(self._task, completed=self._fraction() * self.epochs,
                              line=self._line(now))
        self._pushed_at, self._dirty = now, False

    def _log(self, now):
        self.console.print(log_line(self._epoch, self.epochs, now - self._started, self._record,
                                    self._rate, self.console.width), markup=False,
                           highlight=False, soft_wrap=True)
        self._logged_at, self._logged_epoch = now, self._epoch

    def _close(self):
        if self._progress is not None:
            if self._dirty:
                self._push(time.monotonic())
            self._progress.stop()
            self._progress = None
        elif self._record is not None and not self.quiet and self._logged_epoch != self._epoch:
            self._log(time.monotonic())

    def __exit__(self, *exc):
        self._close()
        return False
