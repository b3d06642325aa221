"""A lateness rule for the BLAS threads of a dense training step (an MLP's GEMMs on numpy's
OpenBLAS): when two threads stop paying, the next steps run their GEMMs on one, for a stretch
that doubles while two stay late; then two are tried again. The results do not change.

Why: when the machine is loaded, OpenBLAS's two threads wait on each other (one of them has
lost its core) and benchmarks/mlp.py's step collapses. Measured (Dec 4 2026, the 2-core
machine, 784-512-256-10 with Adam, 8 alternations of 20 steps, two then one BLAS thread; the
machine at load 3.5-4.4 from others' work): batch 64 60.2 ms a step against 1.70 ms; with
three busy loops started beside it (load 5.7) 32.5 against 1.87 ms, batch 256 101 against
16.3 ms. Quiet, two threads make a batch-64 step ~1.2 ms (benchmarks/HISTORY.md, s10-mlp).
With the rule (one model, its step context swapped every block of 40 steps, 16 alternations,
the busy loops started by the timing script; mean step = what an epoch costs): two busy loops,
batch 64 5.25 -> 2.51 ms, 256 53.0 -> 6.0 ms; three, 64 12.7 -> 3.7 ms, 256 22.2 -> 9.0 ms.
The median step at 64 gets worse, 1.25-1.33 -> 1.73 ms: two threads are mostly fast there and
collapse now and then, and the rule keeps the steps on one thread (~96% of them). Quiet
(blocks of 50, 31 alternations, load 2.5 from others): 1154 -> 1166 us at 64 (the rule faster
in 13 of 31), 2665 -> 2666 at 256; entering and leaving the rule costs 0.9 us a step.

The rule (`StepLateness`, one per model and batch shape, dlcli/train.py `small_step_blas`)
times whole steps. A two-thread step is late past SLOWER of the one-thread reference: the
median step of the last one-thread stretch, or, before any, ONE_GUESS times the fastest
two-thread step (two threads never make a step more than ~2x faster, and the collapse is
20-50x). Two late steps of the last four start a stretch of `alone` steps on one thread
(ALONE, doubling while two are late again right after it, up to ALONE_MAX); ON_TIME steps on
time in a row bring it back to ALONE and forget the stretch's reference (the load changed).
A key's first step (kernels loaded or compiled inside it) is not judged, like kernels/duo.py's.

Results: OpenBLAS's sgemm is NOT the same on one thread as on two when K (the summed axis) is
more than one of its K blocks: its threaded driver (level3_thread.c) splits the last two
blocks' worth of K in halves and the serial one (level3.c) at a multiple of its unroll (the
MLP's first layer, x @ W^T with K = 784: 392 + 392 on two threads; the outputs differ in the
last bits, up to 4e-5 at batch 64). So a GEMM on one thread (`matmul`) runs the two-thread
driver's K blocks itself, one GEMM each, adding them in order as the kernel does: bitwise the
two-thread result. The blocks are found once per shape and layout (`_plan`) by trying the
drivers' halving rule for a range of block sizes against the two-thread result on random
values in the same layouts; a GEMM that none reproduces, or that needs no split, runs plain (equal already) or
on two threads. So a run gives the same numbers whatever the load did to the rule.
"""

from __future__ import annotations

import time

import numpy as np

SLOWER = 1.0  # a two-thread step no faster than one thread's is late
ONE_GUESS = 2.0  # the one-thread step, before one was measured, as a multiple of two's best
ALONE, ALONE_MAX, ON_TIME = 8, 512, 8
Q_TRIED = (128, 192, 224, 256, 288, 320, 384, 448, 480, 512, 640, 768, 1024)

# inside a one-thread step, the BLAS threads outside it (whose results `matmul` keeps); else 0
_ALONE = [0]


class StepLateness:
    """The rule's state; `begin()` says whether this step runs alone, `end(seconds)` judges
    it. `clock` is injectable for tests."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.steps = 0
        self.best_two = np.inf
        self.one_ref = None  # median one-thread step of the last stretch
        self.recent = []  # last four two-thread steps: late or not
        self.stretch = ALONE
        self.left = 0  # one-thread steps still to run
        self.stretch_times = []
        self.just_back = False  # the first judged two-thread steps after a stretch
        self.on_time = 0

    def begin(self) -> bool:
        return self.left > 0

    def end(self, seconds: float, alone: bool) -> None:
        self.steps += 1
        if self.steps == 1:
            return
        if alone:
            self.stretch_times.append(seconds)
            self.left -= 1
            if self.left == 0:
                self.one_ref = float(np.median(self.stretch_times))
                self.stretch_times, self.recent, self.just_back = [], [], True
            return
        reference = self.one_ref if self.one_ref is not None else ONE_GUESS * self.best_two
        late = seconds > SLOWER * reference
        self.best_two = min(self.best_two, seconds)
        self.recent = (self.recent + [late])[-4:]
        if not late:
            self.on_time += 1
            if self.on_time >= ON_TIME:
                self.stretch, self.one_ref, self.just_back = ALONE, None, False
            return
        self.on_time = 0
        if sum(self.recent) >= 2:
            if self.just_back:
                self.stretch = min(2 * self.stretch, ALONE_MAX)
            self.left, self.recent = self.stretch, []


class LateStep:
    """`small_step_blas`'s context for a dense step: two BLAS threads, or one while the rule
    says so (`_ALONE` set, the GEMMs through `matmul`)."""

    __slots__ = ("rule", "one", "alone", "t0")

    def __init__(self, one, clock=time.perf_counter):
        self.rule, self.one, self.alone, self.t0 = StepLateness(clock), one, False, 0.0

    def __enter__(self):
        self.alone = self.rule.begin()
        if self.alone:
            self.one.__enter__()
            _ALONE[0] = max(self.one.before)
        self.t0 = self.rule.clock()
        return self

    def __exit__(self, *exc):
        seconds = self.rule.clock() - self.t0
        if self.alone:
            _ALONE[0] = 0
            self.one.__exit__(*exc)
        if exc[0] is None:
            self.rule.end(seconds, self.alone)
        return False


_PLANS: dict = {}  # (shapes, layouts, dtype) -> None (plain), "two", or K blocks


def matmul(a, b, out):
    """np.matmul(a, b, out=out); inside a one-thread step, bitwise as on the threads outside it."""
    threads = _ALONE[0]
    if not threads:
        return np.matmul(a, b, out=out)
    key = (a.shape, b.shape, a.strides, b.strides, out.strides, a.dtype, threads)
    plan = _PLANS.get(key, False)
    if plan is False:
        plan = _PLANS[key] = _plan(a, b, out, threads)
    if plan is None:
        return np.matmul(a, b, out=out)
    if plan == "two":
        from .threads import blas_threads
        with blas_threads(threads):
            return np.matmul(a, b, out=out)
    return _blocked(a, b, out, plan)


def _blocked(a, b, out, blocks):
    start, stop = blocks[0]
    np.matmul(a[:, start:stop], b[start:stop], out=out)
    for start, stop in blocks[1:]:
        out += np.matmul(a[:, start:stop], b[start:stop])
    return out


def threaded_blocks(k: int, q: int):
    """OpenBLAS level3_thread.c's K blocks: q while 2q or more remain, then the rest in halves
    (the larger first) when it is more than q."""
    blocks, start = [], 0
    while start < k:
        left = k - start
        size = q if left >= 2 * q else (left + 1) // 2 if left > q else left
        blocks.append((start, start + size))
        start += size
    return blocks


def _plan(a, b, out, threads):
    from .threads import blas_threads
    # random values in the operands' layouts, not the data at hand: on data whose sums are
    # exact whatever their order (small integers, rows of zeros) every split would pass
    rng = np.random.default_rng(0)
    a, b = np.empty_like(a), np.empty_like(b)
    a[...] = rng.standard_normal(a.shape)
    b[...] = rng.standard_normal(b.shape)
    two = np.empty_like(out)
    with blas_threads(threads):
        np.matmul(a, b, out=two)
    trial = np.empty_like(out)
    if np.array_equal(np.matmul(a, b, out=trial), two):
        return None
    k = a.shape[1]
    for q in Q_TRIED:
        blocks = threaded_blocks(k, q)
        if len(blocks) > 1 and np.array_equal(_blocked(a, b, trial, blocks), two):
            return blocks
    return "two"
