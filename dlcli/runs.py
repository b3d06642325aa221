"""Run directories and atomic writes.

Every file goes to a temporary name in the same directory and is renamed over the target,
so a crash or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from .errors import BadInput, DlcliError


def default_runs_dir(runs_dir=None) -> Path:
    return Path(runs_dir or os.environ.get("DLCLI_RUNS") or "runs")


def _umask() -> int:
    """The process umask, read without changing it where /proc tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_stray_temporaries(path: Path) -> None:
    """`.<name>.*.tmp` left by a process killed mid-write (nothing else writes them: a run or
    search directory has one writer, held by its lock)."""
    for stray in path.parent.glob(f".{path.name}.*.tmp"):
        stray.unlink(missing_ok=True)


def _staged(path: Path, data: bytes) -> str:
    """`data` in a temporary file beside `path`, on disk (fsynced): renaming it is the commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stray_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600; the file is the user's like any other, so the umask decides
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path, data: bytes) -> None:
    atomic_write_files({path: data})


def atomic_write_files(files: dict) -> None:
    """Several files ({path: bytes}) written so that they change together: each is written and
    synced first, then all are renamed into place, in order, one rename after another (a kill
    between two renames is a matter of microseconds, not of writing a file)."""
    staged = []
    try:
        for path, data in files.items():
            staged.append((_staged(Path(path), data), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj, indent=2) -> None:
    atomic_write_bytes(path, json_bytes(obj, indent))


def json_bytes(obj, indent=2) -> bytes:
    return (json.dumps(obj, indent=indent, default=_jsonable) + "\n").encode()


def npz_bytes(arrays: dict, note: dict | None = None) -> bytes:
    """An .npz of `arrays`; `note` (JSON) rides in the zip archive's comment, which np.load
    ignores: a checkpoint's params say which epoch they are in the same file, so that no kill
    can part them (two files are two renames)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    if note is not None:
        with zipfile.ZipFile(buf, "a") as archive:
            archive.comment = json.dumps(note).encode()
    return buf.getvalue()


def npz_note(path) -> dict | None:
    """The note `npz_bytes` put in an .npz, or None (none, or not an .npz we can read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            note = json.loads(archive.comment) if archive.comment else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return note if isinstance(note, dict) else None


def atomic_write_npz(path, arrays: dict) -> None:
    atomic_write_bytes(path, npz_bytes(arrays))


def _append_line(fd: int, line: bytes, path=None) -> None:
    """One line appended whole or not at all: a write cut short (a full disk) is cut back to
    where the file ended, so that readers never see half a line from us."""
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        written = os.write(fd, line)
        while written < len(line):
            written += os.write(fd, line[written:])
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, end)
        if isinstance(err, OSError) and err.filename is None and path is not None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def append_jsonl(path, obj) -> None:
    """Append one line to a file that gets few lines (a search's trials), made durable at once."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        _append_line(fd, (json.dumps(obj, default=_jsonable) + "\n").encode(), path)
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlWriter:
    """Appends one JSON object per line, each with a single write(), whole or not at all.

    Not fsync'd per line: a metrics line per epoch of a 15,000-epoch run would make the disk,
    not the training, the bottleneck. A crash loses at most the lines the kernel had not
    written back; a reader skips a torn last line (`read_jsonl`).
    """

    def __init__(self, path, mode="a"):
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "w" else os.O_APPEND)
        self.fd = os.open(path, flags, 0o666)
        self.path = path

    def write(self, obj) -> None:
        _append_line(self.fd, (json.dumps(obj, default=_jsonable) + "\n").encode(), self.path)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

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
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for k in range(1, 10_000):
            path = runs_dir / (base if k == 1 else f"{base}-{k}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as err:
        if err.errno in NO_SPACE:
            raise DiskFull(f"cannot create a run directory under {runs_dir}: {err.strerror}")
        raise BadInput(f"cannot create a run directory under {runs_dir}: {err.strerror}",
                       key="--runs-dir")
    raise BadInput(f"cannot create a run directory under {runs_dir}", key="--runs-dir")


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
    """Every object of a JSON-lines file. A torn last line (a crash or a full disk mid-write)
    is skipped; a bad line elsewhere is bad input naming the file and line."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except (ValueError, UnicodeDecodeError):
            if number >= len(lines) - 1 and all(not rest.strip() for rest in lines[number:]):
                break  # the last line, torn
            raise BadInput("not a JSON line", file=path, line=number)
    return out


def repair_jsonl(path) -> None:
    """Cut a torn last line off before appending more (else the next line would join it)."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    good = len(data)
    if data and not data.endswith(b"\n"):
        good = data.rfind(b"\n") + 1
    else:
        tail = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            if tail.strip():
                json.loads(tail)
        except ValueError:
            good = len(data.rstrip(b"\n")) - len(tail)
    if good != len(data):
        with open(path, "r+b") as f:
            f.truncate(good)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(DlcliError):
    """Out of space (or quota): exit 1, one line saying what was saved and where."""


class DirectoryLock:
    """An exclusive lock on a run or search directory for as long as its writer runs.

    `flock` on `<dir>/.lock` (removed when the writer is done), which holds the writer's pid: the kernel drops the lock when the
    process dies however it dies, so a crashed writer never leaves a stale lock, and a reader
    can tell a run that is still going from one whose process is gone (`is_locked`).
    """

    def __init__(self, directory, what="run directory"):
        self.path = Path(directory) / ".lock"
        self.what = what
        self.fd = None

    def __enter__(self):
        import fcntl
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_pid(self.fd)
            os.close(self.fd)
            self.fd = None
            raise BadInput(f"the {self.what} is in use by another dlcli process"
                           + (f" (pid {other})" if other else ""), file=self.path.parent)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            # the writer is done: the file goes (a finished directory holds only its run
            # files); one left behind by a killed writer is harmless, nobody holds it
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    __del__ = __exit__


def _read_pid(fd) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def is_locked(directory) -> bool:
    """Whether a live process holds the directory's lock (a run still being written)."""
    import fcntl
    path = Path(directory) / ".lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def run_state(path) -> dict:
    """What a run directory says about itself: its summary.json, or for a run without one
    (still training, or killed) `running` / `crashed` with its last epoch, so that no run is
    hidden from `dlcli runs`."""
    path = Path(path)
    summary = path / "summary.json"
    if summary.exists():
        try:
            return read_json(summary)
        except ValueError:
            pass  # written atomically, so only a foreign file gets here
    state = {"status": "running" if is_locked(path) else "crashed", "epochs": 0}
    metrics = path / "metrics.jsonl"
    if metrics.exists():
        lines = read_jsonl(metrics)
        if lines:
            state["epochs"] = lines[-1].get("epoch", len(lines))
            state["seconds"] = lines[-1].get("seconds")
    checkpoint = path / "checkpoint.json"
    if checkpoint.exists():
        with contextlib.suppress(ValueError, OSError):
            state["checkpoint_epoch"] = read_json(checkpoint).get("epoch")
        # the params' own word wins: a kill between the pair's two renames leaves checkpoint.json
        # one checkpoint behind params.npz
        note = npz_note(path / "params.npz")
        if note is not None and "epoch" in note:
            state["checkpoint_epoch"] = note["epoch"]
    return state


def runs_root(runs_dir=None, must_exist=False) -> Path:
    """The runs directory, checked: a file or an unreadable folder is bad input, and so is a
    missing one the user named (`--runs-dir`, $DLCLI_RUNS) where it must exist."""
    root = default_runs_dir(runs_dir)
    named = runs_dir is not None or os.environ.get("DLCLI_RUNS")
    if root.exists() and not root.is_dir():
        raise BadInput("is not a directory", file=root, key="--runs-dir" if runs_dir else None)
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise BadInput("permission denied", file=root, key="--runs-dir" if runs_dir else None)
    if must_exist and named and not root.exists():
        raise BadInput("no such runs directory", file=root, key="--runs-dir" if runs_dir else None)
    return root
