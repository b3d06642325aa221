"""The search space of `dlcli search`: each key's law and range, the draws, and coarse to fine.

The notes' scales: a learning rate log-uniformly, a momentum beta as 1 - 10^r, a layer count
uniformly over integers. Every law is a monotone map of one uniform number, so a range narrowed
to the span of the best trials' values is that span on the law's own scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .rng import stream

LOG_LAWS = ("log_uniform", "one_minus_log_uniform", "log_int_uniform")


# -- the search space -------------------------------------------------------------------------
@dataclass(frozen=True)
class Dim:
    """One searched key: its law and its bounds (lo, hi), or its choices for `choice`."""

    key: str
    law: str
    bounds: tuple

    def draw(self, u: float):
        """The value for a uniform draw u in [0, 1): each law is a monotone map of u."""
        if self.law == "choice":
            return self.bounds[min(int(u * len(self.bounds)), len(self.bounds) - 1)]
        lo, hi = self.bounds
        if self.law == "uniform":
            return lo + u * (hi - lo)
        if self.law == "int_uniform":
            return min(int(lo) + int(u * (hi - lo + 1)), int(hi))
        if self.law == "log_uniform":
            return 10 ** _between(math.log10(lo), math.log10(hi), u)
        if self.law == "one_minus_log_uniform":
            return 1 - 10 ** _between(math.log10(1 - lo), math.log10(1 - hi), u)
        if self.law == "log_int_uniform":
            # Widen by half a unit each side so that rounding gives the end values their share.
            value = round(10 ** _between(math.log10(lo - 0.5), math.log10(hi + 0.5), u))
            return min(max(value, int(lo)), int(hi))
        raise ValueError(f"unknown law {self.law}")

    def narrowed(self, values: list) -> "Dim":
        """The range spanned by `values` (drawn from this dim), sampled by the same law.

        Every law is monotone, so the span of the values is also their span in log space
        (log laws) or in the space of log10(1 - beta) (one_minus_log_uniform).
        """
        if self.law == "choice":
            return Dim(self.key, self.law, tuple(c for c in self.bounds if c in values))
        return Dim(self.key, self.law, (min(values), max(values)))

    @property
    def is_log(self) -> bool:
        return self.law in LOG_LAWS

    def axis(self, value) -> float:
        """Where a value sits on a plot's x axis: log-scaled for log laws."""
        if self.law == "choice":
            return float(self.bounds.index(value)) if value in self.bounds else 0.0
        if self.law == "one_minus_log_uniform":
            return -math.log10(1 - value)  # larger beta to the right, as on the value axis
        return math.log10(value) if self.is_log else float(value)

    def describe(self) -> str:
        if self.law == "choice":
            return f"choice {list(self.bounds)}"
        return f"{self.law} [{_fmt(self.bounds[0])}, {_fmt(self.bounds[1])}]"


def _between(a: float, b: float, u: float) -> float:
    return a + u * (b - a)


def dims_of(space: dict) -> list[Dim]:
    dims = []
    for key, spec in space.items():
        (law, bounds), = spec.items()
        dims.append(Dim(key, law, tuple(bounds)))
    return dims


def sample(dims: list[Dim], rng, n: int) -> list[dict]:
    """n configurations; one uniform draw per key, trial by trial, key by key."""
    return [{d.key: d.draw(float(rng.random())) for d in dims} for _ in range(n)]


def round_generators(seed: int, rounds: int) -> list:
    """One generator per round, children of the recipe's search stream, so that a round's
    draws don't depend on how many rounds follow it."""
    return stream(seed, "search").spawn(rounds)


# -- trials and their ranking -----------------------------------------------------------------
@dataclass
class Trial:
    number: int
    round: int
    seed: int
    values: dict
    recipe: dict  # the full recipe to train, validated


@dataclass
class Settings:
    trials: int
    rounds: int
    keep: float
    space: dict
    metric: str  # evaluation.metric: error | f1 | cost

    def rank_value(self, metric):
        """Lower is better: f1 is reported as itself but ranked by 1 - f1."""
        return 1 - metric if self.metric == "f1" else metric


def ranked(records: list[dict], settings: Settings) -> list[dict]:
    """Completed trials with a metric, those that meet the satisficing metrics first,
    each group by its optimizing metric (the notes' 1 optimizing, N - 1 satisficing)."""
    done = [r for r in records if r["status"] == "completed" and r["metric"] is not None]
    return sorted(done, key=lambda r: (not r.get("satisficing_met", True),
                                       settings.rank_value(r["metric"]), r["trial"]))


def best_of(records: list[dict], settings: Settings) -> dict | None:
    order = ranked(records, settings)
    return order[0] if order and order[0].get("satisficing_met", True) else None


def narrow(dims: list[Dim], records: list[dict], settings: Settings) -> list[Dim]:
    """Coarse to fine: each range shrinks to the span of the best `keep` fraction of the
    finished trials (at least two, so a range does not collapse to a point)."""
    order = ranked(records, settings)
    if not order:
        return dims
    top = order[:min(len(order), max(2, math.ceil(settings.keep * len(order))))]
    return [d.narrowed([r["values"][d.key] for r in top]) for d in dims]


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
