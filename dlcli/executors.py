"""Where a search's trials run: a local process pool or a Dask cluster, behind one interface.

Both are `concurrent.futures`-like (`submit` returns a future) and add what a search needs to
survive its infrastructure: `renew()` replaces a pool a killed worker broke, `workers()` says
how many workers can take a trial (None: unknown, always some), `stop()` ends local workers now.
Local workers watch their driver and exit when it is gone (faults.watch_parent).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from .errors import BadInput, DlcliError

# Environment variables that size the thread pools of numba, OpenMP and the BLAS libraries.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")


class NoWorkers(DlcliError):
    """A cluster with no worker to run trials, for longer than --worker-timeout: exit 1."""


def is_infrastructure(err: BaseException) -> bool:
    """A failure of where the trial ran, not of the trial: a dead worker process, a lost
    Dask worker or scheduler, a full disk. Such a trial is retried, never a result."""
    import errno
    from concurrent.futures import CancelledError
    from concurrent.futures.process import BrokenProcessPool
    from .runs import DiskFull
    if isinstance(err, (BrokenProcessPool, CancelledError, DiskFull)):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return type(err).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError",
                                  "StreamClosedError")


class LocalPool:
    """A spawned process pool that can be renewed after a worker is killed."""

    def __init__(self, workers: int):
        self.n = workers
        self.executor = None
        self.renew()

    def _make(self):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context
        from .faults import watch_parent
        # Spawned, not forked: a fork of a process that has started Numba's or BLAS's threads
        # can deadlock. The children inherit the environment, so they share Numba's cache.
        return ProcessPoolExecutor(self.n, mp_context=get_context("spawn"),
                                   initializer=watch_parent, initargs=(os.getpid(),))

    def submit(self, fn, *args):
        # the pool starts its workers on demand, inside submit: that is when they take the
        # environment
        with single_threaded_children(self.n > 1):
            return self.executor.submit(fn, *args)

    @property
    def broken(self) -> bool:
        return bool(getattr(self.executor, "_broken", False))

    def renew(self) -> None:
        if self.executor is not None:
            self.stop()
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._make()
        self.stopped = False

    def workers(self):
        return None

    def stop(self, grace: float = 5.0) -> None:
        """End the local workers now (Ctrl-C, SIGTERM, a broken pool). SIGTERM first: a worker
        saves its trial as interrupted; a worker that would go on to a queued trial instead
        is killed after `grace` seconds."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                with contextlib.suppress(Exception):
                    process.kill()
        self.stopped = True

    def shutdown(self) -> None:
        self.executor.shutdown(wait=not getattr(self, "stopped", False), cancel_futures=True)


class DaskPool:
    """A Dask client's executor; lost workers are the scheduler's to replace."""

    def __init__(self, client):
        self.client = client
        # pure=False: a trial writes files, so Dask must never reuse an earlier result.
        self.executor = client.get_executor(pure=False)
        self.broken = False

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    def renew(self) -> None:
        pass

    def workers(self) -> int:
        try:
            return len(self.client.scheduler_info(n_workers=-1)["workers"])
        except TypeError:  # older distributed: no n_workers argument
            return len(self.client.scheduler_info()["workers"])
        except Exception:  # the scheduler itself is gone
            return 0

    def stop(self) -> None:
        pass


def say(message: str) -> None:
    print(f"dlcli: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def open_executor(workers: int | None = None, scheduler: str | None = None,
                  worker_timeout: float = 60.0, notify=say):
    """A Dask cluster's pool when `scheduler` is given, else a local process pool."""
    if scheduler:
        with dask_executor(scheduler, worker_timeout, notify) as executor:
            yield executor
        return
    pool = LocalPool(workers or os.cpu_count() or 1)
    try:
        yield pool
    finally:
        pool.shutdown()


def stop_workers(executor) -> None:
    """Ctrl-C: end the local workers now. Each has saved the trial it was running when the
    signal came, but the pool has already handed one more trial to a worker, and that one would
    run to its end; `--resume` reruns every unfinished trial anyway."""
    if hasattr(executor, "stop"):
        executor.stop()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


@contextlib.contextmanager
def single_threaded_children(enabled: bool):
    """Workers spawned inside this block size their thread pools to one thread, so that W
    workers on W cores don't each start W threads. The driver's own pools are sized
    already (or never used by it), and its environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    if enabled:
        os.environ.update({k: "1" for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def dask_executor(address: str, worker_timeout: float = 60.0, notify=say):
    try:
        from distributed import Client
    except ImportError:
        raise BadInput("needs the distributed package: pip install 'dlcli[cluster]'",
                       key="--scheduler")
    notify(f"connecting to the Dask scheduler at {address} (up to 10 s)")
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise BadInput(f"cannot reach the Dask scheduler at {address}: {err}", key="--scheduler")
    with client:
        pool = DaskPool(client)
        if not pool.workers():
            notify(f"the Dask scheduler at {address} has no worker; waiting up to "
                   f"{worker_timeout:g} s for one (--worker-timeout)")
            try:
                client.wait_for_workers(1, timeout=worker_timeout)
            except (TimeoutError, OSError):
                raise NoWorkers(f"no Dask worker joined the scheduler at {address} within "
                                f"{worker_timeout:g} s (--worker-timeout); start one with: "
                                f"dask worker {address}")
        yield pool


class WorkerWatch:
    """How long a pool has had no worker; a search gives up after `timeout` seconds."""

    def __init__(self, executor, timeout: float, notify=None):
        self.executor, self.timeout, self.notify = executor, timeout, notify
        self.since = None

    def gone_for_too_long(self) -> bool:
        count = self.executor.workers() if hasattr(self.executor, "workers") else None
        if count is None or count > 0:
            if self.since is not None and self.notify:
                self.notify("a Dask worker is back; the search goes on")
            self.since = None
            return False
        now = time.monotonic()
        if self.since is None:
            self.since = now
            if self.notify:
                self.notify(f"no Dask worker is connected; waiting up to {self.timeout:g} s for "
                            "one (--worker-timeout)")
        return now - self.since > self.timeout
