"""dlcli: deep-learning experiments from YAML recipes, on Numba CPU kernels.

Importing the package stays cheap (no numpy, no numba) so that `dlcli --help` answers fast;
the heavy modules are imported by the commands that need them.
"""

import os

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each GEMM before they sleep; set
# before numpy loads it, 2^20 (~0.4 ms). The spinning thread took a core from the Numba threads
# of the recurrent time loops that follow the layers' 2-thread GEMMs: with the default, the
# char-LM LSTM step at batch 32 took 11.9-12.9 ms on average, with 2^20 9.5-11.5 ms (quiet
# machine, Dec 3 2026; batch 128 within 3%), and the process burned ~25% less CPU. The conv
# nets' Numba kernels between GEMMs gain too: LeNet-5 at batch 64 17.6-19.3k ex/s against
# 11.9-13.4k (benchmarks/cnn.py, two interleaved pairs). A user's own setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

__version__ = "0.1.0"
