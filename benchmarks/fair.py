"""One method for every benchmark, so that each is fair to the other side.

- Threads: both sides are capped alike before any numeric library loads: OpenMP, OpenBLAS,
  MKL and Numba read their variables here (`cap_threads`), PyTorch gets `set_num_threads`.
  On a bigger machine that still compares THREADS threads against THREADS threads.
- Optimizer: PyTorch's Adam is the fused one (`fused=True`, in the CPU build since 2.4) where
  the build has it, as dlcli's is one fused Numba kernel; the default (foreach) Adam is
  reported beside it.
- Timing: the sides run the same work (same model, data, batches, epochs); one untimed
  warm-up epoch each, then epochs interleaved with the order rotating every epoch, so that a
  neighbour's load falls on every side alike; each side's figure is the MEDIAN of its epochs.
  Only training steps are timed; the evaluation pass after each epoch is run but not timed
  (dlcli's examples_per_second counts the same way).
Run under `flock /tmp/dlcli-bench.lock`, and repeat on a shared machine: figures taken while
others compile are noisy.
"""

from __future__ import annotations

import os
import statistics
import time

THREADS = int(os.environ.get("DLCLI_BENCH_THREADS", "2"))
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def cap_threads(n: int = THREADS) -> None:
    """Call before numpy, numba or torch is imported: they size their pools when they load."""
    for k in THREAD_VARIABLES:
        os.environ[k] = str(n)
    # as `dlcli train` runs (dlcli/__init__.py sets it, but a benchmark loads numpy first):
    # without it numpy's idle OpenBLAS thread spins ~0.1 s after each 2-thread GEMM of
    # dlcli's untimed evaluation, into the next side's timed epoch, a PyTorch one (LeNet-5 at
    # 64: PyTorch's step 3.52 -> 4.69 ms, the ratio 1.15x -> 1.53x; branch s6-lenet, Dec 3 2026)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")


def torch_threads(torch, n: int = THREADS) -> None:
    torch.set_num_threads(n)


def torch_adam(torch, params, lr, fused=True):
    """(optimizer, whether it is the fused kernel)."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True), True
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr), False


def interleaved_medians(sides: dict, epochs: int) -> dict:
    """{name: median seconds} of `epochs` timed epochs per side. `sides[name]()` runs one
    epoch and returns the seconds of its training steps."""
    names = list(sides)
    for name in names:  # warm-up: JIT caches, allocators, BLAS buffers
        sides[name]()
    seconds = {name: [] for name in names}
    for e in range(epochs):
        for name in names[e % len(names):] + names[:e % len(names)]:
            seconds[name].append(sides[name]())
    return {name: statistics.median(s) for name, s in seconds.items()}


def timed_epoch(step, evaluate, batch, x, y, order):
    """Seconds of one epoch's training steps (the evaluation after it runs, untimed)."""
    xs, ys = x[order], y[order]
    started = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        step(xs[i:i + batch], ys[i:i + batch])
    seconds = time.perf_counter() - started
    evaluate(x, y)
    return seconds


def header(what: str) -> str:
    return (f"{what}: {THREADS} threads each side (OMP/OpenBLAS/MKL/Numba, torch.set_num_threads); "
            "median of interleaved epochs after a warm-up; training steps timed, evaluation not")
