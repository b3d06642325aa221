"""Numba's worker threads pinned one to a core, for the kernels whose threads must run together;
and the one BLAS thread limit (`blas_threads`) and blocked-pass dispatch (`run_pass`,
`shared`) the parallel drivers' callers, the recurrent loops and a training step of small
GEMMs share.

Why: Numba's workqueue layer puts its workers to sleep between parallel regions, and Linux
wakes a sleeping thread on the core it last ran on when that core is idle. Once both workers
have run on the same core (after any region where the other core was busy), they keep waking
there together: a region split in two halves then runs both halves on one core, one after the
other, and the load balancer moves one away only milliseconds later. Measured (Dec 3 2026, the
2-core machine, load ~1.5): a 2-thread region that followed 2.3 ms of serial work started with
both workers on the same core 300 times in 300; the LSTM split forward pass at batch 32 took
1.18 ms at best and 2.6-2.75 ms as the median within a training step. Pinned, the workers
started on distinct cores 300 times in 300 and the same pass took 1.52 ms as the median.

Each worker is pinned by the kernel itself (`sched_setaffinity(0, ...)` in its own prange
iteration: the workqueue layer hands a region of n_threads iterations one to each worker), to
the process's allowed cores in order. Nothing is pinned when there are more workers than
allowed cores (they would share one anyway), where the system has no thread affinity (macOS,
Windows), or with DLCLI_PIN_THREADS=0. The symbols are
called by name (resolved when the module is linked), so the kernel caches like any other.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _set_own_affinity(typingctx, mask):
    """sched_setaffinity(0, sizeof mask, mask): the calling thread onto the cores in `mask`."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        size = builder.mul(ary.nitems, context.get_constant(types.intp, 8))
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_setaffinity")
        data = builder.bitcast(ary.data, ir.IntType(8).as_pointer())
        rc = builder.call(fn, [ir.Constant(ir.IntType(32), 0), size, data])
        return builder.sext(rc, ir.IntType(64))

    return types.int64(mask), codegen


@intrinsic
def _current_cpu(typingctx):
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_getcpu")
        return builder.sext(builder.call(fn, []), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def next_block(typingctx, counter):
    """counter[0] += 1 atomically; the value before. Threads take blocks of work from a shared
    counter until it passes the count: a thread slowed by another process's load takes fewer."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", ary.data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen


@njit(cache=True)
def block_counter():
    """A counter for `next_block`, at 0: made outside the parallel kernel's own code, where
    np.zeros would be a parallel region of its own (kernels/recurrent.py)."""
    counter = np.empty(1, dtype=np.int64)
    counter[0] = 0
    return counter


@njit(cache=True, parallel=True)
def pin_workers(masks, done):
    """Worker p onto the cores of masks[p] (uint64 words of a cpu_set_t); done[p] = its core."""
    for p in prange(masks.shape[0]):
        done[p] = -1 if _set_own_affinity(masks[p]) != 0 else _current_cpu()


@njit(cache=True, parallel=True)
def worker_cpus(cpus):
    """The core each of the first len(cpus) workers runs on (tests: distinct once pinned)."""
    for p in prange(cpus.shape[0]):
        cpus[p] = _current_cpu()


_PINNED = []


def pin_once():
    """Pin Numba's workers to distinct cores, once per process; the cores, or None if not."""
    if _PINNED:
        return _PINNED[0]
    from numba import get_num_threads
    result = None
    if not hasattr(os, "sched_getaffinity"):  # macOS, Windows: no thread affinity to set
        _PINNED.append(result)
        return result
    n, cpus = get_num_threads(), sorted(os.sched_getaffinity(0))
    if os.environ.get("DLCLI_PIN_THREADS", "1") != "0" and 1 < n <= len(cpus):
        masks = np.zeros((n, 16), dtype=np.uint64)  # 1024 cores, glibc's cpu_set_t
        for p, c in enumerate(cpus[:n]):
            masks[p, c // 64] |= np.uint64(1) << np.uint64(c % 64)
        done = np.empty(n, dtype=np.int64)
        pin_workers(masks, done)
        result = tuple(int(c) for c in done) if (done >= 0).all() else None
    _PINNED.append(result)
    return result


_BLAS = []  # one threadpoolctl controller a process (None without threadpoolctl)


def blas_threads(n: int):
    """A context with BLAS (numpy's and the one Numba's np.dot calls) on n threads: for the
    parallel drivers that call it from each Numba thread (a block's GEMMs are small; two BLAS
    threads under each Numba thread would fight for the cores), the recurrent time loops and
    a training step of small GEMMs (dlcli/train.py). It may be kept and entered again; it
    calls the libraries' own set functions: ~3.5 us to enter and leave, against ~17 us for
    threadpoolctl's limit() (Dec 3 2026). A nullcontext without threadpoolctl."""
    import contextlib
    controller = _controller()
    if controller is None:
        return contextlib.nullcontext()
    return _BlasHeld(n, [lib for lib in controller.lib_controllers if lib.user_api == "blas"])


def _controller():
    """The process's threadpoolctl controller, or None without threadpoolctl."""
    if not _BLAS:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  the BLAS numba's np.dot calls: loaded first
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    return _BLAS[0]


def one_blas_thread():
    return blas_threads(1)


def run_pass(parts, serial, parallel, args, parallel_args=(), duo=None):
    """A blocked pass: the serial driver when there is one run of blocks, else `shared`'s
    (the parallel driver with `parallel_args` after `args`, or the `duo` driver on `args`)."""
    if parts == 1:
        serial(*args)
    else:
        shared(parts, parallel, args + tuple(parallel_args), duo, args)


def shared(parts, parallel, args, duo=None, duo_args=()):
    """A pass of `parts` runs on both cores. Inside a training step with kernels/duo.py's
    helper, the helper and this thread take the runs (`duo` on `duo_args`; see
    kernels/conv_duo.py: no parallel region's workers to wake); else Numba's threads
    (`parallel` on `args`) under one BLAS thread. The same runs either way, so the same
    numbers."""
    if duo is not None:
        from .duo import for_step
        helper = for_step()
        if helper is not None:
            helper.run(duo, parts, *duo_args)
            return
    with one_blas_thread():
        parallel(*args)


class _BlasHeld:
    """`blas_threads(n)`'s context: the thread counts of the BLAS libraries set on entry and
    put back on exit."""

    __slots__ = ("n", "libs", "before")

    def __init__(self, n, libs):
        self.n, self.libs, self.before = n, libs, ()

    def current(self):
        """The libraries' thread counts now (1 without a BLAS library)."""
        return tuple(lib.num_threads for lib in self.libs) or (1,)

    def __enter__(self):
        self.before = self.current()
        for lib in self.libs:
            lib.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        for lib, n in zip(self.libs, self.before):
            lib.set_num_threads(n)
        return False

