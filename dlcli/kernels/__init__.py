"""Numba-JIT kernels (`@njit(cache=True)`), plain functions the layers call.

Importing this package pins Numba's threading layer to `workqueue` before numba loads:
the OpenMP layer fought OpenBLAS's threads for the 2 cores and ran up to 5x slower. It then
loads Numba and makes its inlining cheaper (kernels/inlining.py).

Compilation is lazy: a kernel compiles for the argument types of its first call (no eager
signature lists) and only the driver a layer picks (serial or parallel, and for max pooling
the scan its channel count needs) compiles. What the first LeNet-5 step compiles on an empty
cache, in one process (DLCLI_COMPILE_AHEAD=0), CPU seconds by Numba's compile events
(2026-12-03 12:52 UTC, load ~2.5; 9.0 s of CPU for the step, 8.6 s of it compiling):
direct.direct_backward_pool 1.6 s and direct.direct_forward_pool 1.6 s (conv + relu + max
pool, fused), patches.backward_blocks 1.6 s and forward_blocks 1.05 s, activation_backward
0.86 s and bias_activation 0.45 s, pool.maxpool_forward 0.73 s and maxpool_backward 0.22 s,
softmax_crossentropy 0.35 s, adam_step 0.17 s. Of the whole: LLVM ~3.6 s (function passes,
module passes, machine code, a third each), Numba's typing ~2.2 s, its IR inlining 1.1 s
(3.5 s before kernels/inlining.py took out Numba's copies of the inlined IR, imported
here), and ~1.8 s building Numba's own numpy overloads inside the kernels (np.empty built 8
times, np.zeros 3 times: Numba keys each build by the calling kernel's flags, so kernels
with other fastmath / error_model / parallel options do not share them).
Inlining the per-example bodies into their drivers cut typing and lowering (conv.py).

That work is shared with a helper process (kernels/ahead.py): the step is traced at its first
kernel missing from the cache and a second process compiles the kernels from the last one
back while the step compiles them from the first. Fresh process to the end of the first
LeNet-5 step (three interleaved pairs against main ee8387c, 10:25 UTC, load 1.8-2.1): 4.6,
12.5 (a load spike: the helper got no core) and 4.8 s against 8.7, 10.6 and 9.3 s; cached
0.6-0.9 s either way; at 10:39 UTC (load 2.4-3.5) 5.3, 5.4 and 5.1 s against 7.6, 7.6 and
8.6 s for the same code with DLCLI_COMPILE_AHEAD=0, interleaved. Both processes start Numba without scipy.linalg (numba_without_scipy).
With the inlining fix (13:10 UTC, load 1.7-2.3, benchmarks/cnn.py): 6.5 s with the helper,
9.8 s in one process, 0.7 s cached (main: 6.6 / 10.7 / 0.9 s at 11:20, load 0-1.7); the step's
thread CPU, main and this code interleaved four times (13:05, load 1.2-1.5): 9.9-13.4 s
against 8.0-11.0 s, medians 11.8 and 9.3 s.

Again on main 73795e8 (2026-12-03 14:58-15:30 UTC, benchmarks/compile_time.py, one process,
load 0.7-3): the step 6.5 s of thread CPU, 6.2 of it in eight kernel compiles, one signature
each, all float32 (nothing compiled that the step does not call): patches.backward_pooled_blocks
1.58 s, direct.direct_backward_pool 1.26, direct_forward_pool 1.16 (+0.3 s of Numba's one-time
set-up before it), patches.forward_pooled_blocks 1.12, activation_backward 0.54,
bias_activation 0.27, softmax_crossentropy 0.18, adam_step 0.10; by pass native lowering 3.6 s
(LLVM's function passes 1.6, module passes 1.5, machine code 0.7), typing 1.5, inlining 0.6;
Numba's own overloads built inside them 0.8 s (np.empty 9 times, 0.30). With the helper forked
(kernels/ahead.py) the end of the first step is decided by the main process's own chain (its
five forward kernels, ~3.3 s, after ~0.6 s of imports and model): 3.7-4.0 s at load 2-3.6,
against 3.8-4.0 s for main's spawned helper in the same interleaved runs; the fork matters where
the load leaves the helper less than a core (its first compile 0.01 s after the trace against
0.83 s at load ~3). Tried, not kept: LLVM's function passes at -O1 or skipped before the
module's -O3 (6.50/6.56 -> 6.40-6.47 / 6.18-6.42 s of CPU, every kernel's machine code
changed); `_typed` as a cast instead of a one-cell np.empty (one np.empty build fewer, ~0.04 s).

With kernels/duo.py's helper thread in LeNet-5's step (main ae58852, 2026-12-03 20:20 UTC,
benchmarks/compile_time.py, load 0.2-1.2): twelve kernels, 6.0 s of CPU in compiles (the
pooled pair's `_duo` drivers 1.59 / 1.09 / 1.05 / 1.03 s, activation_backward 0.39,
bias_activation 0.24, softmax_crossentropy 0.21, direct_duo.fold_parts 0.17, adam_step 0.09,
duo's spin_wait / _pauses / cycles 0.13); LLVM ~3.1 s of it (function passes 1.3, module
passes 1.2, machine code 0.55). That helper thread calls a pass's kernel beside the main
thread, and a first step on an empty cache had lost its second process to it: whichever of
the two threads came second to forward_pooled_blocks_duo waited for a done file only the
helper process writes, so until that process had compiled everything else (the main thread
2.96 s in a 1.2 s compile, the step 4.76 s at load ~2; or, where the main thread came first,
it spun in the pass's finish for the other one meanwhile: 5.3 s of its CPU against 2.0, at
load ~4.8). A claim is now the process's (kernels/ahead.py): five timelines at load 1.9-2.9,
3.8-4.2 s to the end of the first step (0.3 s of it imports and model), the main process
compiling the forward kernels, the helper the backward ones; cached 0.44-0.5 s. The two
halves were about as long either way, so the wall time moved little where it could be
measured: fresh processes interleaved with main (four pairs, load 1.5-2.4, most of it other
jobs) 7.2 against 7.4 s medians; benchmarks/cnn.py's line 3.9 s (load 2.8 -> 2.2), and 7.6 s
against main's 9.1 s run right before it (load 3.3-3.6); at load 4.5-6, 14-18 s either way.
Under 5 s needs the second core free: the compile is 7-8 s of CPU across the two processes.
"""

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from . import inlining  # noqa: E402  (after the threading layer, which numba reads when it loads)

inlining.install()  # inline="always" without Numba's two wasted copies of the IR (kernels/inlining.py)


def numba_without_scipy() -> None:
    """Start Numba without importing scipy.linalg (~0.2 s of CPU, a fifth of predicting one
    image, 0.15-0.3 s of a first training step). Numba's array maths imports scipy's BLAS once,
    only to choose how np.vdot and np.inner compile (BLAS or a plain loop); no dlcli kernel
    calls them. The BLAS np.dot calls (scipy.linalg.cython_blas) is then loaded alone
    (blas_alone)."""
    import sys
    if "numba.np.arraymath" not in sys.modules and "scipy.linalg" not in sys.modules:
        sys.modules["scipy.linalg.cython_blas"] = None   # `import` of it fails at once, parents unread
        try:
            import numba.np.arraymath  # noqa: F401
        finally:
            del sys.modules["scipy.linalg.cython_blas"]
    blas_alone()


def blas_alone() -> None:
    """Load scipy.linalg.cython_blas, the BLAS Numba's np.dot calls, without running
    scipy.linalg's package (its decompositions, sparse tools, array API layer): 2 ms against
    0.2-0.6 s (load 0-7, 2026-12-03). Numba imports that module to compile an np.dot and a
    cached kernel's first np.dot imports it again, so without this every first LeNet-5 step
    paid for the package, cached or not. The extension module needs nothing of the package;
    a later `import scipy.linalg` runs the package as usual (and finds this module loaded)."""
    import sys
    if "scipy.linalg.cython_blas" in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import importlib.util
        import types
        spec = importlib.util.find_spec("scipy.linalg")
        package = types.ModuleType("scipy.linalg")
        package.__path__ = list(spec.submodule_search_locations)
    except Exception:  # noqa: BLE001  no scipy, or one laid out otherwise: Numba imports it itself
        return
    sys.modules["scipy.linalg"] = package  # the parent the import looks for, its code not run
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except Exception:  # noqa: BLE001  as above
        sys.modules.pop("scipy.linalg.cython_blas", None)
    finally:
        del sys.modules["scipy.linalg"]
