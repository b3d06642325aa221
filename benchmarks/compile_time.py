"""Where the first LeNet-5 training step's compile goes (issue 14): per kernel and per phase.

    python benchmarks/compile_time.py [--ahead] [--cache DIR] [--batch 64]

Runs the start-up of benchmarks/cnn.py (build LeNet-5, one training step) in THIS process,
by default on a fresh empty Numba cache and with the compile-ahead helper off
(DLCLI_COMPILE_AHEAD=0; --ahead leaves it on). Per kernel: wall and thread-CPU seconds of
each Numba compile (`numba:compile` events), nested compiles counted in their parent only
once; --nested lists the compiles inside them (Numba's own numpy overloads). Per phase:
Numba's own pass timings (overload metadata 'pipeline_times', wall time), summed over the
kernels compiled; LLVM's optimisation and machine code are inside NativeLowering, and
NUMBA_LLVM_PASS_TIMINGS=1 adds LLVM's own total per kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ahead", action="store_true")
    parser.add_argument("--cache")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--nested", action="store_true", help="list the nested compiles (overloads)")
    parser.add_argument("--passes", type=int, default=12, help="how many passes to list")
    args = parser.parse_args()
    started, cpu0 = time.perf_counter(), time.thread_time()
    os.environ["NUMBA_CACHE_DIR"] = args.cache or tempfile.mkdtemp(prefix="dlcli-numba-")
    if not args.ahead:
        os.environ["DLCLI_COMPILE_AHEAD"] = "0"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cnn import LENET, data, dlcli_trainer
    import dlcli.kernels  # noqa: F401  (numba loads)
    from numba.core import event

    kernels, stack, nested = [], [], {}

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append((time.perf_counter(), time.thread_time()))

        def on_end(self, ev):
            w0, c0 = stack.pop()
            d = ev.data["dispatcher"]
            cpu = time.thread_time() - c0
            for i in range(len(stack)):  # the parents' self time excludes this
                stack[i] = (stack[i][0], stack[i][1] + cpu) if i == len(stack) - 1 else stack[i]
            if stack:
                key = f"{d.py_func.__module__}.{d.py_func.__qualname__}"
                n, t = nested.get(key, (0, 0.0))
                nested[key] = (n + 1, t + cpu)
            if not stack:
                kernels.append((f"{d.py_func.__module__.rsplit('.', 1)[-1]}.{d.py_func.__name__}",
                                time.perf_counter() - w0, time.thread_time() - c0, d))

    t_import = time.perf_counter() - started
    model, step, _ = dlcli_trainer(LENET, (28, 28, 1))
    x, y = data((28, 28, 1), args.batch)
    t0, c0 = time.perf_counter(), time.thread_time()
    with event.install_listener("numba:compile", Listener()):
        step(x, y)
    t_step, c_step = time.perf_counter() - t0, time.thread_time() - c0
    load = open("/proc/loadavg").read().split()[:3]
    print(f"imports {t_import:.2f} s; step {t_step:.2f} s wall, {c_step:.2f} s thread CPU; "
          f"start to end of step {time.perf_counter() - started:.2f} s; load {load}")
    passes = {}
    for name, wall, cpu, d in kernels:
        sigs = list(d.overloads)
        print(f"  {name:40s} {wall:6.2f} s wall {cpu:6.2f} s CPU  {len(sigs)} sig(s) "
              + "; ".join(", ".join(str(a) for a in s) for s in sigs)[:200])
        for cres in d.overloads.values():
            own = {}
            for times in (cres.metadata or {}).get("pipeline_times", {}).values():
                for pass_name, t in times.items():
                    key = pass_name.split("_", 1)[-1]
                    own[key] = own.get(key, 0.0) + t.init + t.run + t.finalize
            for key, t in own.items():
                passes[key] = passes.get(key, 0.0) + t
            llvm = (cres.metadata or {}).get("llvm_pass_timings")
            opt = f" (LLVM {llvm.get_total_time():.2f})" if llvm is not None and not llvm.is_empty else ""
            print(f"      typing {own.get('nopython_type_inference', 0):.2f} inline "
                  f"{own.get('inline_inlinables', 0):.2f} lowering {own.get('native_lowering', 0):.2f}{opt}")
    if args.nested:
        for key, (n, t) in sorted(nested.items(), key=lambda kv: -kv[1][1]):
            print(f"    nested {key:60s} x{n:2d} {t:6.2f} s CPU (self)")
    print(f"  all kernels: {sum(k[1] for k in kernels):.2f} s wall, {sum(k[2] for k in kernels):.2f} s CPU")
    for key, t in sorted(passes.items(), key=lambda kv: -kv[1])[:args.passes]:
        print(f"    pass {key:40s} {t:6.2f} s")


if __name__ == "__main__":
    main()
