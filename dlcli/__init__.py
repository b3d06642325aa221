"""dlcli: deep-learning experiments from YAML recipes, on Numba CPU kernels.

Importing the package stays cheap (no numpy, no numba) so that `dlcli --help` answers fast;
the heavy modules are imported by the commands that need them.
"""

__version__ = "0.1.0"
