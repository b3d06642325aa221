"""Bias / variance / data mismatch: which gap to work on next, and the notes' basic recipe for it.

The errors step up human-level -> train -> train-dev -> dev -> test; each step is a gap:
avoidable bias, variance, data mismatch, overfitting to the dev set. The largest positive one
that stands out of its measurement noise is where the next idea pays most.
"""

from __future__ import annotations

import math

GAPS = ("avoidable_bias", "variance", "data_mismatch", "dev_overfitting")  # also the tie order

ADVICE = {
    "avoidable_bias": [
        "Train a bigger network (more hidden units or layers)",
        "Train longer",
        "Use a better optimization algorithm: momentum, RMSprop or Adam",
        "Try another architecture, or search the hyperparameters",
    ],
    "variance": [
        "Get more training data",
        "Add regularization: L2, dropout, data augmentation",
        "Try another architecture, or search the hyperparameters",
    ],
    "data_mismatch": [
        "Carry out manual error analysis to understand how the training and dev/test sets differ",
        "Make the training data more similar to the dev/test data (e.g. artificial data synthesis)",
        "Collect more training data like the dev/test data",
    ],
    "dev_overfitting": [
        "Get a bigger dev set",
    ],
}


def diagnose(errors: dict, human_level_error: float | None, sizes: dict | None = None) -> dict:
    """summary.json's "diagnosis": the four signed gaps (None where a split is missing), the
    focus and the advice for it, each gap's noise, and which split the variance came from.

    A gap's noise is two standard errors of the difference of its two errors, each error's
    standard error sqrt(e (1 - e) / n) over its split's n examples (human-level counts as
    exact). The focus is the largest positive gap that exceeds its noise (ties go to the
    earlier gap, bias before variance, as the basic recipe orders them), or None when none
    does: a negative gap never asks for work, and a one-example difference is not a finding.
    Without `sizes` (summaries written before them) the noise is unknown (None) and every
    positive gap counts.

    Variance is train-dev - train, else dev - train, else test - train (test standing in for
    dev, `variance_from: "test"`).
    """
    sizes = sizes or {}
    train, train_dev, dev, test = (errors.get(k) for k in ("train", "train_dev", "dev", "test"))
    variance_from = next((s for s, e in (("train_dev", train_dev), ("dev", dev), ("test", test))
                          if e is not None), None) if train is not None else None
    pairs = {  # gap: (upper split, lower split); None stands for human-level
        "avoidable_bias": ("train", None),
        "variance": (variance_from, "train"),
        "data_mismatch": ("dev", "train_dev"),
        "dev_overfitting": ("test", "dev"),
    }
    value = {"train": train, "train_dev": train_dev, "dev": dev, "test": test, None: human_level_error}
    gaps, noise = {}, {}
    for name, (upper, lower) in pairs.items():
        gaps[name] = _gap(value.get(upper), value.get(lower)) if upper else None
        noise[name] = None if gaps[name] is None else _gap_noise(
            [(value[s], sizes.get(s)) for s in (upper, lower) if s is not None])
    significant = [name for name in GAPS if gaps[name] is not None and gaps[name] > 0
                   and gaps[name] > (noise[name] or 0.0)]
    focus = max(significant, key=gaps.get) if significant else None  # max keeps the first of equals
    return {**gaps, "focus": focus, "advice": list(ADVICE.get(focus, [])), "noise": noise,
            "variance_from": variance_from}


def standard_error(error, n) -> float | None:
    """The binomial standard error of an error rate measured on n examples."""
    if error is None or not n:
        return None
    error = min(max(float(error), 0.0), 1.0)
    return math.sqrt(error * (1.0 - error) / n)


def _gap_noise(terms) -> float | None:
    """Two standard errors of a difference of independent errors; None if a size is unknown."""
    ses = [standard_error(e, n) for e, n in terms]
    if any(se is None for se in ses):
        return None
    return round(2.0 * math.sqrt(sum(se * se for se in ses)), 12)


def _gap(upper, lower):
    if upper is None or lower is None:
        return None
    # 12 decimals: float noise (0.088 - 0.005 = 0.08299999999999999) neither shows in
    # summary.json nor decides a tie between equal gaps
    return round(float(upper) - float(lower), 12)
