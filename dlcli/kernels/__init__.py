"""Numba-JIT kernels (`@njit(cache=True)`), plain functions the layers call.

Importing this package pins Numba's threading layer to `workqueue` before numba loads:
the OpenMP layer fought OpenBLAS's threads for the 2 cores and ran up to 5x slower.

Compilation is lazy: a kernel compiles for the argument types of its first call (no eager
signature lists) and only the driver a layer picks (serial or parallel, and for max pooling
the scan its channel count needs) compiles. What the first LeNet-5 step compiles on an empty
cache, by Numba's compile events (2026-12-03 06:43 UTC, load 2.9; 11.0 s to the end of that
step): direct.direct_forward_pool 2.5 s and direct.direct_backward_pool 2.6 s (conv + relu +
max pool, fused; 10.6 s for the previous parallel direct kernels), pool 1.3 s, im2col /
col2im 1.6 s, activations 1.4 s, losses 0.3 s, optim 0.1 s. Numba's own start-up (import,
first compile, first cache hit) is ~1 s of it, whatever is compiled.
"""

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")


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
