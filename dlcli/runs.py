"""Run directories and atomic writes.

Every file goes to a temporary name in the same directory and is renamed over the target,
so a crash or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import BadInput


def default_runs_dir(runs_dir=None) -> Path:
    return Path(runs_dir or os.environ.get("DLCLI_RUNS") or "runs")


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj, indent=2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_jsonable) + "\n")


def atomic_write_npz(path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def append_jsonl(path, obj) -> None:
    """Append one line to a file that gets few lines (a search's trials), made durable at once."""
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())


class JsonlWriter:
    """Appends one JSON object per line, each with a single write() and a flush.

    Not fsync'd per line: a metrics line per epoch of a 15,000-epoch run would make the disk,
    not the training, the bottleneck. A crash loses at most the lines not yet flushed.
    """

    def __init__(self, path, mode="a"):
        self.file = open(path, mode)

    def write(self, obj) -> None:
        self.file.write(json.dumps(obj, default=_jsonable) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def new_run_dir(runs_dir, name: str) -> Path:
    """`<runs_dir>/<YYYYmmdd-HHMMSS>-<name>`, with -2, -3... where that exists already."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    for k in range(1, 10_000):
        path = runs_dir / (base if k == 1 else f"{base}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise BadInput(f"cannot create a run directory under {runs_dir}")


def find_run(run, runs_dir=None) -> Path:
    """A run given as a path, or as a name (or unique name suffix) under the runs directory."""
    path = Path(run)
    if (path / "summary.json").exists() or (path / "recipe.yaml").exists():
        return path
    root = default_runs_dir(runs_dir)
    if root.is_dir():
        matches = sorted(p for p in root.iterdir() if p.is_dir()
                         and (p.name == str(run) or p.name.endswith(f"-{run}")))
        if len(matches) >= 1:
            return matches[-1]
    raise BadInput("no such run directory", file=run)


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
