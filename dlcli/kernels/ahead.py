"""Compiling ahead: a helper process compiles a model's kernels while its first step does too.

Why: on an empty Numba cache the first LeNet-5 training step compiles ten kernels one after
the other (7.5 of its 8.2 s, 2026-12-03, load 1.5). Numba compiles under one global lock, so
a thread cannot share that work; another process can, on the second core, and Numba's disk
cache is where the two meet.

How, once per process, in its first training step (dlcli/train.py), at the first kernel
missing from Numba's cache:
1. the step runs on a deep copy of the model and optimizer with every kernel call recorded
   instead of run (a kernel with no compiled version returns 0.0 at once). The copy's values
   are garbage, but its shapes, dtypes and layouts, so the kernels' argument types, are the
   real ones; a layer that fails on garbage ends the trace early, with what it recorded
   (LeNet-5 at batch 64: ten kernels, 0.1-0.3 s, mostly the first calls of its GEMMs);
2. the kernels missing from the cache go to a helper process, LAST FIRST, while the real step
   compiles them first to last. On Linux the helper is a fork of this process (os.fork after
   the trace: Numba loaded, its target's registries initialised once for both, the kernels'
   modules imported), so it compiles from the first millisecond; elsewhere, or with
   DLCLI_AHEAD_FORK=0, a fresh interpreter (`python -m dlcli.kernels.ahead`), whose imports
   and first-compile set-up took ~0.7-1 s before its first kernel (timeline of the first
   LeNet-5 step, 2026-12-03, load ~3: the helper's first compile 0.83 s after the trace
   against 0.01 s forked). Whoever reaches a kernel first claims it (an exclusive create of a
   file named by its index in a temporary folder);
   the main process waits for a kernel the helper has claimed, then loads it from the cache,
   so no kernel compiles twice and the two sides meet where their halves of the work do. A
   claim is the process's, not a thread's: kernels/duo.py's helper thread calls a pass's
   kernel beside the main thread, and whichever thread comes second waits on Numba's compile
   lock for the first (`_claiming`).
Nothing happens when the process has already compiled a kernel (the trace would then run
real kernels on garbage, e.g. a scatter by garbage indices), when the first kernel the step
calls is in the cache (a cached start pays one look-up in its index), in a search's pool
worker (its siblings keep the cores busy), or with DLCLI_COMPILE_AHEAD=0. The helper is ended
when the main process exits; its claim files go with it. The forked child writes nothing but
Numba's cache files and its claims, and leaves by os._exit (no atexit, no output of the
parent's flushed twice).

Measured: see kernels/__init__.py.
"""

from __future__ import annotations

import atexit
import copy
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager

_started = []  # the helper, once per process


def _nothing(*args, **kws):
    return 0.0


def _compiled_any() -> bool:
    """Whether a dlcli kernel has a compiled (or cache-loaded) version in this process."""
    from numba.core.dispatcher import Dispatcher
    for name, module in list(sys.modules.items()):
        if name.startswith("dlcli.kernels.") and module is not None:
            if any(isinstance(obj, Dispatcher) and obj.overloads for obj in vars(module).values()):
                return True
    return False


def _pool_worker() -> bool:
    """A search's trial in a process pool (dlcli/executors.py): its siblings already keep the
    cores busy, so a helper would only add a process."""
    import multiprocessing
    return multiprocessing.parent_process() is not None


def _real_compile():
    """Numba's own `_compile_for_args` (the dispatcher calls it when no compiled version matches
    the arguments), which this module covers on the Dispatcher class for a while."""
    from numba.core.dispatcher import Dispatcher
    for cls in Dispatcher.__mro__[1:]:
        if "_compile_for_args" in cls.__dict__:
            return cls.__dict__["_compile_for_args"]
    raise AttributeError("_compile_for_args")


def _cover(fn):
    """Dispatcher._compile_for_args = fn, or Numba's own again for None."""
    from numba.core.dispatcher import Dispatcher
    if fn is not None:
        Dispatcher._compile_for_args = fn
    elif "_compile_for_args" in Dispatcher.__dict__:
        del Dispatcher._compile_for_args


def trace(step, model, opt, *args) -> list:
    """[(dispatcher, argument types)] of the dlcli kernels `step(model, opt, trainable, *args)`
    calls, in call order, each once, run on copies with no kernel run."""
    import numpy as np
    from numba.core.dispatcher import Dispatcher
    calls, compile_for_args = [], _real_compile()

    def record(self, *a, **kws):
        if not self.py_func.__module__.startswith("dlcli."):
            return compile_for_args(self, *a, **kws)
        call = (self, tuple(self.typeof_pyval(v) for v in a))
        if call not in calls:
            calls.append(call)
        return _nothing  # the dispatcher calls what this returns, with the arguments

    before = Dispatcher.__dict__.get("_compile_for_args")
    _cover(record)
    try:
        model, opt = copy.deepcopy((model, opt))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step(model, opt, model.trainable(), *args)
    except Exception:  # noqa: BLE001  garbage values may stop a layer: keep what was recorded
        pass
    finally:
        _cover(before)
    return calls


def _cached(dispatcher, sig) -> bool:
    """Whether Numba's cache holds `sig`; True where nothing can be cached (a helper's compile
    would be lost)."""
    cache = dispatcher._cache
    try:
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except AttributeError:  # a NullCache: caching off for this kernel
        return True


@contextmanager
def compiling_ahead(step, model, opt, *args):
    """Run a process's first training step `step(model, opt, trainable, *args)` inside this:
    at its first kernel missing from Numba's cache, the step is traced and the helper started
    (the module docstring). A cached start only looks up that the first kernel is cached."""
    if _started or os.environ.get("DLCLI_COMPILE_AHEAD", "1") == "0" or _pool_worker():
        yield
        return
    _started.append(None)
    try:
        from . import numba_without_scipy
        numba_without_scipy()
        from numba.core.dispatcher import Dispatcher
        if _compiled_any():
            yield
            return
        compile_for_args = _real_compile()
    except Exception:  # noqa: BLE001  Numba internals moved: compile as before, in the step
        yield
        return

    def on_miss(self, *a, **kws):
        if not self.py_func.__module__.startswith("dlcli."):
            return compile_for_args(self, *a, **kws)
        _cover(None)  # the first kernel decides
        try:
            if not _cached(self, tuple(self.typeof_pyval(v) for v in a)):
                _start(step, model, opt, *args)
        except Exception:  # noqa: BLE001  as above
            pass
        return self._compile_for_args(*a, **kws)  # the helper's claims, if it started

    _cover(on_miss)
    try:
        yield
    finally:
        if Dispatcher.__dict__.get("_compile_for_args") is on_miss:
            _cover(None)


def _start(step, model, opt, *args):
    """Trace the step, start the helper on the kernels missing from the cache, and make this
    process wait for those the helper claims."""
    missing = [(d, sig) for d, sig in trace(step, model, opt, *args) if not _cached(d, sig)]
    if len(missing) < 2:  # one kernel: the step compiles it as soon as a helper would
        return
    claims = tempfile.mkdtemp(prefix="dlcli-ahead-")
    work = [(d, sig, i) for i, (d, sig) in enumerate(missing)][::-1]
    helper = _fork(claims, work) if _can_fork() else _spawn(claims, work)
    _started[0] = helper
    atexit.register(_end, helper, claims)
    index = {(d, sig): i for i, (d, sig) in enumerate(missing)}
    mine = (threading.Lock(), set())
    for d in {d for d, _ in missing}:
        d._compile_for_args = _claiming(d, index, claims, helper, mine)


def _can_fork() -> bool:
    """Linux: a fork is safe here (the child only compiles; it runs no kernel, no BLAS, no
    thread of the parent's) and starts at once. Elsewhere (macOS's system libraries, Windows)
    a fresh interpreter."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and \
        os.environ.get("DLCLI_AHEAD_FORK", "1") != "0"


class _Forked:
    """The forked helper, as much of subprocess.Popen's interface as this module uses."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        return self._reap(os.WNOHANG)

    def wait(self):
        return self._reap(0)

    def _reap(self, options):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, options)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored, a waitpid(-1))
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)


def _fork(claims, work):
    """The helper as a fork of this process: Numba loaded, its target initialised (the first
    compile's ~0.3 s of registries, paid here once for both) and the kernels' modules imported,
    so it compiles at once; a fresh interpreter (_spawn) took ~0.7 s to its first compile."""
    d = work[0][0]
    d.targetctx.refresh()
    d.typingctx.refresh()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Python 3.12's warning on forking with threads running
        pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:  # the child: nothing of the parent's runs here (no atexit, no output)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _compile_all(claims, work)
        code = 0
    finally:
        os._exit(code)


def _spawn(claims, work):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    helper = subprocess.Popen([sys.executable, "-m", "dlcli.kernels.ahead"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    helper.stdin.write(pickle.dumps((claims, [(d.py_func.__module__, d.py_func.__name__, sig, i)
                                              for d, sig, i in work])))
    helper.stdin.close()
    return helper


def _claim(claims, i) -> bool:
    """Whether this process is the first to claim kernel i (an atomic exclusive create)."""
    try:
        os.close(os.open(os.path.join(claims, str(i)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _claiming(dispatcher, index, claims, helper, mine):
    """The main process's compile of `dispatcher`: a kernel the helper has claimed is waited
    for, then loaded from the cache, not compiled a second time. `mine` (a lock, the indices
    this process claimed) lets a second thread of this process reach a kernel the first is
    compiling (kernels/duo.py's helper thread calls the pass's kernel too) and wait on Numba's
    compile lock: it had waited for a done file only the helper process writes, so until that
    process exited, while the main thread spun in the pass's `finish` for it (Dec 3 2026, the
    first LeNet-5 step 4.8-17 s at load 1.5-2.2, its main thread 1.8-3 s in such waits)."""
    compile_for_args = _real_compile()
    lock, claimed = mine

    def claiming(*a, **kws):
        i = index.get((dispatcher, tuple(dispatcher.typeof_pyval(v) for v in a)))
        if i is not None:
            with lock:
                ours = i in claimed or _claim(claims, i)
                if ours:
                    claimed.add(i)
            if not ours:
                done = os.path.join(claims, f"done-{i}")
                while not os.path.exists(done) and helper.poll() is None:
                    time.sleep(0.005)
        return compile_for_args(dispatcher, *a, **kws)
    return claiming


def _end(helper, claims):
    if helper.poll() is None:
        helper.terminate()
        helper.wait()
    shutil.rmtree(claims, ignore_errors=True)


def _compile_all(claims, work):
    """Compile each (dispatcher, argument types, index) in order, those the main process has
    not claimed first."""
    for d, sig, i in work:
        if not _claim(claims, i):
            continue
        try:
            d.compile(sig)
        except Exception:  # noqa: BLE001  the main process compiles what failed here
            pass
        open(os.path.join(claims, f"done-{i}"), "w").close()


def main():
    """The spawned helper: compile each (module, kernel, argument types, index) read from stdin."""
    import importlib

    from . import numba_without_scipy
    numba_without_scipy()
    claims, work = pickle.load(sys.stdin.buffer)
    _compile_all(claims, [(getattr(importlib.import_module(module), name), sig, i)
                          for module, name, sig, i in work])


if __name__ == "__main__":
    main()
