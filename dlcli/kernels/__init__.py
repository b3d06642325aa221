"""Numba-JIT kernels (`@njit(cache=True)`), plain functions the layers call.

Importing this package pins Numba's threading layer to `workqueue` before numba loads:
the OpenMP layer fought OpenBLAS's threads for the 2 cores and ran up to 5x slower.
"""

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
