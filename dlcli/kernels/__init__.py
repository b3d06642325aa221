"""Numba-JIT kernels (`@njit(cache=True)`), plain functions the layers call.

Importing this package pins Numba's threading layer to `workqueue` before numba loads:
the OpenMP layer fought OpenBLAS's threads for the 2 cores and ran up to 5x slower.

Compilation is lazy: a kernel compiles for the argument types of its first call (no eager
signature lists) and only the driver a layer picks (serial or parallel, and for max pooling
the scan its channel count needs) compiles. What the first LeNet-5 step compiles on an empty
cache, in one process (DLCLI_COMPILE_AHEAD=0), by Numba's compile events (2026-12-03 10:28
UTC, load 1.6-1.7; 8.0 s to the end of that step, 7.6 s of it compiling):
direct.direct_forward_pool 1.9 s and direct.direct_backward_pool 1.8 s (conv + relu + max
pool, fused), activations 0.6 + 0.8 s, im2col 0.7 s and col2im 0.7 s, max pool 0.5 + 0.25 s,
losses 0.2 s, optim 0.1 s. About a third of each is LLVM; the rest is Numba's typing and
lowering, which inlining the per-example bodies into their drivers cut (conv.py).

That work is shared with a helper process (kernels/ahead.py): the step is traced at its first
kernel missing from the cache and a second process compiles the kernels from the last one
back while the step compiles them from the first. Fresh process to the end of the first
LeNet-5 step (three interleaved pairs against main ee8387c, 10:25 UTC, load 1.8-2.1): 4.6,
12.5 (a load spike: the helper got no core) and 4.8 s against 8.7, 10.6 and 9.3 s; cached
0.6-0.9 s either way; at 10:39 UTC (load 2.4-3.5) 5.3, 5.4 and 5.1 s against 7.6, 7.6 and
8.6 s for the same code with DLCLI_COMPILE_AHEAD=0, interleaved. Both processes start Numba without scipy.linalg (numba_without_scipy).
"""

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from . import inlining  # noqa: E402  (after the threading layer, which numba reads when it loads)

inlining.install()  # inline="always" without Numba's two wasted copies of the IR (kernels/inlining.py)


def numba_without_scipy() -> None:
    """Start Numba without importing scipy.linalg (~0.2 s of CPU, a fifth of predicting one
    image, 0.15-0.3 s of a first training step). Numba's array maths imports scipy's BLAS once,
    only to choose how np.vdot and np.inner compile (BLAS or a plain loop); no dlcli kernel
    calls them, and np.dot still finds scipy when a kernel compiled in this process needs it,
    as the block is lifted at once."""
    import sys
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None   # `import` of it fails at once, parents unread
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg.cython_blas"]
