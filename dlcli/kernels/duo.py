"""A second core for a training step of small GEMMs, without Numba's parallel regions: one
helper thread that waits between jobs without sleeping, and jobs split into parts that both
threads take from a shared counter (work stealing).

Why: a Numba `prange` region costs 40-85 us to start on this machine's KVM vCPUs even with
nothing in it (Dec 3 2026, load ~1.5: a 2-thread region of two additions after 0-300 us of
serial work, p10 41-69 us, median 71-84 us): the workqueue layer's workers sleep between
regions and a halted vCPU wakes slowly; static halves then wait for the later thread. Every
2-thread split of LeNet-5's passes lost to the serial ones for that (benchmarks/HISTORY.md,
s4-lenet, s6-lenet). Here the helper stays inside a nogil Numba loop (`spin_wait`) for WAIT seconds
after a job (2 ms, by the time-stamp counter), so a job within that time reaches the other
core at once, and the parts go to whichever thread is free.
The wait used to be a count of yields, meant as ~1.4 ms: at low load a yield returns at
once and the count lasted 0.35 ms, shorter than LeNet-5's dense layers and loss between its
second conv's forward and backward, so every backward had to wake a sleeping helper (Dec 3
2026, load 0.2-0.6, epochs of 64 steps alternating in one process, evaluation between them
as in benchmarks/cnn.py: batch 64 2.25 -> 1.94 ms a step, the old one's epochs 2.0-3.0 ms and
the new one's 1.92-1.97; batch 256 6.75 -> 6.69 ms).

The helper yields its core at every round of the wait (sched_yield): with the pause
instruction instead, at load 4-5 (three other jobs on the 2 cores) the spinning helper took
CPU from the main thread and LeNet-5's step at batch 64 took 2x the serial one (15.0 against
7.4 ms); yielding, 7.48 against 7.24 ms. When jobs stop paying (two of four no faster than
SLOWER of their serial time), the helper has lost its core to another process or shares the
main thread's: the next jobs (ALONE, doubling while it stays late) run on the main thread
alone, as the serial pass would, and the helper goes to sleep. A pass's first job (its kernel loaded or compiled inside it)
is not judged: it had sent LeNet-5 at 256 to the main thread alone for the warm-up epoch
and the next two of benchmarks/cnn.py. A job that had to wake the helper is late only past
WOKEN of its serial time.
The parts' results never depend on which thread ran them (each part writes its own examples'
rows or its own partial sums, added in part order afterwards), nor on the helper at all.

How a job runs (`Duo.run(kernel, parts, *args)`): the kernel is an @njit(nogil=True) function
`kernel(ctrl, gen, counter, parts, *args)` that begins with `go(ctrl, gen)`, takes its parts
with `next_part(counter)`, `part_done(counter)` after each, and ends with `finish`. The main
thread stores the job, then calls the kernel itself: `go` (already without the GIL) tells the helper, which
leaves its wait, takes the GIL the main thread has just let go, and calls the same kernel
with gen -1. The main thread's kernel then waits (`finish`, still nogil) until every part is
done and the helper is back in its wait, so that neither thread waits for the GIL the other
holds.

Where it runs: inside a training step whose GEMMs run on one BLAS thread (dlcli/train.py
`small_step_blas` enters `StepDuo`), so no OpenBLAS thread spins on the helper's core; the
passes split so far are LeNet-5's pooled convolutions (kernels/direct.py, kernels/patches.py)
and the Winograd, split filter-gradient, transpose and max-pool passes of larger convs
(kernels/conv_duo.py: the U-Net's, resnet_small's, inception_small's); and, in an LSTM
model's step (nn/recurrent_cells.py `step_threads`), the LSTM's split time loops
(kernels/recurrent_duo.py). With fewer than two cores, or DLCLI_DUO=0, there is no helper:
LeNet-5's passes run serially, the others in Numba's parallel regions as outside a step.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

GO, INSIDE, SLEEPING, STOP = 0, 1, 2, 3  # cells of `ctrl` (int64, padded to its own lines)
WAIT = 2e-3  # seconds a helper waits (yielding) after a job before it sleeps
# A job that took SLOWER of its serial time or more (its parts times the main thread's
# fastest part of that pass), in two jobs of two or of four (a moving share above LATE_SHARE),
# says that the helper has lost its core to another process, or shares the main thread's:
# the next `alone` jobs run on the main thread, and the helper sleeps. (A helper with a core
# made LeNet-5's passes 0.55-0.65 of their serial time.) That count starts at ALONE and
# doubles while the helper is late again right after it, up to ALONE_MAX; ON_TIME jobs in a
# row that paid bring it back to ALONE. A fixed 200 (50 LeNet-5 steps) had kept whole epochs
# of benchmarks/cnn.py on one core after a burst of PyTorch's threads at their start.
SLOWER = 0.9
LATE_SHARE = 0.3
ALONE, ALONE_MAX, ON_TIME = 8, 512, 8
# A job that had to wake the helper (the first after an evaluation, or after ALONE) pays the
# wake-up (LeNet-5's first conv at 64: 0.40-0.46 ms against 0.42 serial): late only past
# WOKEN of its serial time. Judged by SLOWER, that first job of every epoch made any one late
# job among the next five send 50 steps to the main thread alone.
WOKEN = 1.5


@intrinsic
def _atomic_load(typingctx, ary, i):
    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(a.data, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(ary, i), codegen


@intrinsic
def _atomic_store(typingctx, ary, i, value):
    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(a.data, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(ary, i, value), codegen


@intrinsic
def _atomic_add(typingctx, ary, i, value):
    """ary[i] += value atomically; the value before."""
    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(a.data, [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "acq_rel")

    return types.int64(ary, i, value), codegen


@intrinsic
def _pause(typingctx):
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                            "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _yield(typingctx):
    """sched_yield(): the core to any other thread ready on it (the main thread, a neighbour's
    job), so that a waiting helper takes nothing from them."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _cycles(typingctx):
    """The time-stamp counter (rdtsc): a clock for the helper's wait that costs no system call."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(cache=True, nogil=True)
def cycles():
    return _cycles()


@njit(inline="always")
def go(ctrl, gen):
    """The main thread's call (gen >= 0) lets the helper start the job."""
    if gen >= 0:
        _atomic_store(ctrl, GO, gen)


@njit(inline="always")
def next_part(counter):
    return _atomic_add(counter, 0, 1)


@njit(inline="always")
def part_done(counter):
    _atomic_add(counter, 1, 1)


@njit(inline="always")
def finish(ctrl, gen, counter, parts, own):
    """The main thread's end of a job (`own`: the parts it ran), still without the GIL: until
    every part is done and the helper is back in its wait (so that it never holds the GIL the
    main thread wants next); the pauses it waited in counter[2], its parts in counter[3].
    Returning to Python first to wait there cost a wake-up whenever the helper, back from its
    last part, found the GIL taken."""
    if gen >= 0:
        waited = 0
        while _atomic_load(counter, 1) < parts or _atomic_load(ctrl, INSIDE) != 0:
            _pause()
            waited += 1
        counter[2] = waited
        counter[3] = own


@njit(cache=True, nogil=True)
def spin_wait(ctrl, seen, ticks):
    """The helper's wait for a job newer than `seen`: its generation, or -1 after `ticks` of
    the time-stamp counter (SLEEPING then set), or -2 when told to stop. INSIDE is cleared on
    entry (the last job is over) and set again before a job's generation is returned."""
    _atomic_store(ctrl, INSIDE, 0)
    start = _cycles()
    while _cycles() - start < ticks:
        g = _atomic_load(ctrl, GO)
        if g != seen:
            _atomic_store(ctrl, INSIDE, 1)
            return g
        if _atomic_load(ctrl, STOP) != 0:
            return -2
        _yield()
    _atomic_store(ctrl, SLEEPING, 1)
    if _atomic_load(ctrl, GO) != seen:  # posted while it was going to sleep
        _atomic_store(ctrl, SLEEPING, 0)
        _atomic_store(ctrl, INSIDE, 1)
        return _atomic_load(ctrl, GO)
    return -1


@njit(cache=True, nogil=True)
def _pauses(n):
    for _ in range(n):
        _pause()


def _pause_seconds() -> float:
    _pauses(16)
    started = time.perf_counter()
    _pauses(1 << 14)
    return (time.perf_counter() - started) / (1 << 14)


def _tick_rate() -> float:
    """Time-stamp counter ticks a second (constant on x86-64 since ~2008, whatever the load)."""
    cycles()
    c0, t0 = cycles(), time.perf_counter()
    time.sleep(0.005)
    return (cycles() - c0) / (time.perf_counter() - t0)


class Duo:
    """The helper thread and its control cells; one a process (`duo()`)."""

    def __init__(self):
        self.ctrl = np.zeros(32, dtype=np.int64)  # GO .. STOP in one line, apart from others
        self.gen = 0
        self.jobs = 0  # calls of run, with or without the helper
        self.job = None
        self.late = 0.0  # the moving share of jobs no faster than SLOWER of serial
        self.alone = 0  # jobs left that the main thread runs without the helper
        self.backoff = ALONE  # the next `alone`
        self.on_time = 0  # judged jobs in a row that paid
        self.wake = threading.Event()
        self.pid = os.getpid()
        # compiled (or loaded) here, not by the helper: a fork of this process (kernels/ahead.py)
        # must never find Numba's compile lock held by a thread it does not have
        # kernels/ahead.py's trace of a first step on an empty cache stubs every kernel (0.0 at
        # once): a helper started then died at its first wait (the job it "found" was None) and
        # the whole run went serial. No thread then (its passes run as the trace records
        # them): duo() hands it out uncached, and starts the real one at the real step.
        self.ready = spin_wait(self.ctrl, 0, 0) == -1
        if not self.ready:
            _pauses(0), cycles()  # recorded by the trace: compiled ahead with the rest
            return
        self.ctrl[SLEEPING] = 0
        self.pause = _pause_seconds()  # what one pause of a main thread's wait takes
        self.ticks = int(WAIT * _tick_rate())
        self.best = {}  # (kernel, parts, its first array's shape) -> the fastest part seen
        self.thread = threading.Thread(target=self._serve, name="dlcli-duo", daemon=True)
        self.thread.start()

    def _serve(self):
        ctrl, seen = self.ctrl, 0
        while True:
            g = spin_wait(ctrl, seen, self.ticks)
            if g == -2:
                return
            if g == -1:
                self.wake.wait()
                self.wake.clear()
                ctrl[SLEEPING] = 0
                continue
            seen = g
            kernel, args = self.job
            kernel(ctrl, -1, *args)

    def run(self, kernel, parts, *args):
        """kernel(ctrl, gen, counter, parts, *args) on both threads; returns when all `parts`
        are done. `counter` is fresh (parts taken, parts done, the main thread's wait and
        parts): a
        helper late for an earlier job finds that job's counter spent and does nothing."""
        counter = np.zeros(4, dtype=np.int64)
        self.jobs += 1
        if self.alone > 0:  # the helper was late lately: the main thread takes every part
            self.alone -= 1
            kernel(self.ctrl, -1, counter, parts, *args)
            return
        self.gen += 1
        self.job = (kernel, (counter, parts) + args)
        woken = self.ctrl[SLEEPING]
        if woken:
            self.wake.set()
        started = time.perf_counter()
        kernel(self.ctrl, self.gen, counter, parts, *args)
        took = time.perf_counter() - started
        # the main thread's fastest part of this pass so far: `parts` of them is the serial pass
        own = counter[3]
        if own:
            part = (took - counter[2] * self.pause) / own
            key = (kernel, parts, args[0].shape)
            best = self.best.get(key)
            if best is None:  # a first job (its kernel loaded or compiled inside) judges nothing
                self.best[key] = part
                return
            if part < best:
                self.best[key] = best = part
            # a moving share of jobs no faster than SLOWER of the serial pass: past LATE_SHARE,
            # the helper's core is another process's for now (or both threads share one)
            late = took > (WOKEN if woken else SLOWER) * parts * best
            self.late = 0.75 * self.late + (0.25 if late else 0.0)
            self.on_time = 0 if late else self.on_time + 1
            if self.on_time >= ON_TIME:
                self.backoff = ALONE
            if self.late > LATE_SHARE:
                self.late, self.alone = 0.0, self.backoff
                self.backoff = min(2 * self.backoff, ALONE_MAX)


# the helper's wait uses x86's pause instruction, the time-stamp counter and Linux's
# sched_yield; elsewhere (Apple silicon, Windows) the passes run serially as before
SUPPORTED = sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")

_DUO: list = []


def duo() -> Duo | None:
    """The process's Duo (started at the first call), or None off Linux x86-64, with fewer
    than two cores allowed, Numba held to one thread, or DLCLI_DUO=0."""
    if _DUO and _DUO[0] is not None and _DUO[0].pid != os.getpid():
        _DUO.clear()  # a forked child has no helper thread: start its own
    if not _DUO:
        from numba import config
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        # a search's local workers run with NUMBA_NUM_THREADS=1 (dlcli/executors.py): one
        # core each, so no helper spinning beside another worker's trial
        use = (SUPPORTED and os.environ.get("DLCLI_DUO", "1") != "0" and (cores or 1) >= 2
               and config.NUMBA_NUM_THREADS >= 2)
        helper = Duo() if use else None
        if helper is not None and not helper.ready:
            return helper  # the trace still records the _duo kernels, for the helper process
        _DUO.append(helper)
    return _DUO[0]


_STEP = [0]  # > 0 inside a training step whose GEMMs run on one BLAS thread (`StepDuo`)


def for_step() -> Duo | None:
    """The Duo inside a step of small GEMMs (no BLAS thread of its own on the other core to
    fight the helper), else None: the passes then run as before."""
    return duo() if _STEP[0] else None


# A pass of at least MIN_WORK multiply-adds (~20 us) splits into up to PARTS runs: enough for
# a thread slowed by another process to take fewer, few enough that each run's fixed cost
# (its buffers, a partial sum to add) stays small.
MIN_WORK = 1 << 21
PARTS = 16


def for_pass(work: int, units: int) -> tuple[Duo | None, int]:
    """(the Duo, runs) for a pass of `work` multiply-adds over `units` blocks or examples that
    can split, inside a step of small GEMMs; (None, 1) when it runs as before."""
    if work < MIN_WORK or units < 2:
        return None, 1
    helper = for_step()
    return (helper, min(units, PARTS)) if helper is not None else (None, 1)


class StepDuo:
    """A training step's context (dlcli/train.py `small_step_blas`): BLAS on one thread, and
    the passes that can split into parts share them with the helper thread."""

    __slots__ = ("blas",)

    def __init__(self, blas):
        self.blas = blas

    def __enter__(self):
        self.blas.__enter__()
        _STEP[0] += 1
        return self

    def __exit__(self, *exc):
        _STEP[0] -= 1
        return self.blas.__exit__(*exc)
