"""Numba-JIT kernels (`@njit(cache=True)`), plain functions the layers call.

Importing this package pins Numba's threading layer to `workqueue` before numba loads:
the OpenMP layer fought OpenBLAS's threads for the 2 cores and ran up to 5x slower.

Compilation is lazy: a kernel compiles for the argument types of its first call (no eager
signature lists) and only the driver a layer picks (serial or parallel) compiles. What the
first LeNet-5 step compiles on an empty cache (2026-12-03 02:44 UTC, load 1.6; 15.5 s to the
end of that step, 0.7 s with the cache it left): conv.direct_forward_act_parallel 6.1 s and
conv.direct_filter_grad_parallel 4.5 s (large unrolled loop nests, their bodies inlined into
prange loops), pool 1.4 s, im2col / col2im 1.2 s, activations 1.8 s, losses 0.2 s, optim
0.1 s. Numba's own start-up (import, first compile) is ~0.7 s of it.
"""

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
