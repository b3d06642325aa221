"""Caviar on a laptop: the same 16-trial search with 1 worker, then with 2.

    python benchmarks/search.py [--trials 16] [--epochs 300]

Prints both wall times (worker start-up included, as a user waits for it) and the speed-up;
the target on a 2-core machine is at least 1.6x. The trials are small fully connected
networks on the builtin moons, about a second each. Method (benchmarks/fair.py): the same
work on both sides (the same 16 trials); both hold each worker to one thread (OMP, OpenBLAS,
MKL, Numba), so the figure measures trials in parallel, not threads within one; the 1-worker
and 2-worker searches alternate `--repeats` times (order rotating) and each figure is the
MEDIAN of its repeats. Everything a user waits for is timed (start-up, training, evaluation).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from fair import cap_threads, interleaved_medians

cap_threads(1)
from dlcli import search  # noqa: E402
from dlcli.recipe import recipe_from_dict

TARGET = 1.6


def recipe(trials: int, epochs: int):
    return recipe_from_dict({
        "name": "bench", "seed": 0,
        "data": {"train": {"builtin": "moons", "n": 2000, "noise": 0.2}, "dev": 0.2},
        "model": {"layers": [{"type": "dense", "units": 64, "activation": "relu"},
                             {"type": "dense", "units": 32, "activation": "relu"},
                             {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "optimizer": {"name": "adam"},
        "training": {"epochs": epochs, "batch_size": 64},
        "search": {"trials": trials, "space": {
            "optimizer.learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "optimizer.beta1": {"one_minus_log_uniform": [0.8, 0.99]}}},
    })


def timed(workers: int, r) -> float:
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        with search.open_executor(workers) as executor:
            result = search.search(r, executor=executor, runs_dir=runs)
        seconds = time.perf_counter() - started
    statuses = {rec["status"] for rec in result.records.values()}
    print(f"{workers} worker{'s' if workers > 1 else ''}: {seconds:6.1f} s "
          f"({len(result.records)} trials, {', '.join(sorted(statuses))})")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = recipe(args.trials, args.epochs)
    print("search: 1 thread per worker; median of interleaved repeats; all of it timed")
    with search.single_threaded_children(True):
        medians = interleaved_medians({1: lambda: timed(1, r), 2: lambda: timed(2, r)},
                                      args.repeats)
    one, two = medians[1], medians[2]
    print(f"median: 1 worker {one:.1f} s, 2 workers {two:.1f} s; speed-up: {one / two:.2f}x "
          f"(target >= {TARGET}x on 2 cores)")


if __name__ == "__main__":
    main()
