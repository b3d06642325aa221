"""What a run does when the world misbehaves: signals, checkpoints, a dead parent.

- SIGTERM is Ctrl-C: both raise KeyboardInterrupt once, where the loop can stop cleanly;
  every later one while the run saves is only counted (`Interrupts`), so that the summary is
  written whatever a second Ctrl-C hits, and the process exits 130 afterwards.
- `signals_held` makes an epoch's end one step: a signal that lands while the epoch's
  parameters are kept, counted and logged waits until all three are done.
- `Checkpoints` writes params.npz (atomically, its epoch in its zip comment) and checkpoint.json
  at epoch boundaries, every `training.checkpoint_every` epochs or seconds, so that a SIGKILL
  loses at most that much.
- `watch_parent` ends a worker process whose driver is gone (SIGKILL leaves no time to
  clean up), so that no orphaned worker trains on forever.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Within this block the first SIGINT or SIGTERM raises KeyboardInterrupt; later ones (and
    any after `defer()`) are only counted. Outside the main thread it does nothing."""

    def __init__(self):
        self.raising = True
        self.count = 0
        self.saved = {}

    def _handler(self, signum, frame):
        self.count += 1
        if self.raising:
            self.raising = False
            raise KeyboardInterrupt
        # deferred: the save in progress finishes; the caller exits 130 after it

    def defer(self) -> None:
        self.raising = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self.saved[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)
        self.saved.clear()


@contextlib.contextmanager
def signals_held():
    """SIGINT / SIGTERM arriving inside the block are delivered as it ends, to whatever
    handler was there: a KeyboardInterrupt cannot split the block's bookkeeping in two (an
    epoch counted in summary.json but missing from metrics.jsonl)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came, saved = [], {}
    try:  # installed inside the try: a signal between the two installs restores the first
        for s in SIGNALS:
            saved[s] = signal.signal(s, lambda signum, frame: came.append(signum))
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for signum in came:  # the first may raise; Interrupts would only count the rest
            signal.raise_signal(signum)


def sigterm_as_ctrl_c() -> None:
    """In the CLI's process: SIGTERM does what Ctrl-C does (a KeyboardInterrupt)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def parse_every(value) -> tuple[str, float]:
    """`training.checkpoint_every`: an integer is epochs, "<n>s" seconds, 0 never."""
    if isinstance(value, str):
        return "seconds", float(value[:-1])
    return "epochs", float(value)


class Checkpoints:
    """params.npz and checkpoint.json at epoch ends, when `every` says one is due."""

    def __init__(self, run_dir, every, clock=time.monotonic):
        self.run_dir, (self.unit, self.every) = run_dir, parse_every(every)
        self.clock = clock
        self.last_time, self.last_epoch = clock(), 0

    def due(self, epoch: int) -> bool:
        if self.every <= 0:
            return False
        if self.unit == "epochs":
            return epoch - self.last_epoch >= self.every
        return self.clock() - self.last_time >= self.every

    def maybe_save(self, model, record: dict) -> None:
        if self.due(record["epoch"]):
            self.save(model, record)

    def save(self, model, record: dict) -> None:
        from .runs import atomic_write_files, json_bytes, npz_bytes
        # both staged on disk before either is renamed; params.npz also carries the epoch in its
        # zip comment, since a kill between the two renames (microseconds, but a short epoch
        # checkpoints often) leaves checkpoint.json one checkpoint behind it
        state = {"status": "running", "epoch": record["epoch"], "iteration": record["iteration"],
                 "seconds": record.get("seconds"), "pid": os.getpid()}
        note = {key: state[key] for key in ("epoch", "iteration")}
        atomic_write_files({self.run_dir / "params.npz": npz_bytes(model.state_dict(), note),
                            self.run_dir / "checkpoint.json": json_bytes(state)})
        self.last_time, self.last_epoch = self.clock(), record["epoch"]


def watch_parent(parent_pid: int, every: float = 1.0) -> None:
    """A worker's initializer: exit as soon as the process that started it is gone.

    PR_SET_PDEATHSIG (Linux) delivers SIGTERM the moment the parent dies; the thread polling
    getppid() covers other systems and the race before the prctl call.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: nothing to save in a lost trial
    except (OSError, AttributeError):
        pass

    def poll():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(every)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=poll, daemon=True, name="dlcli-watch-parent").start()
