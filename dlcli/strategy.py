"""Bias / variance / data mismatch: which gap to work on next, and the notes' basic recipe for it.

The errors step up human-level -> train -> train-dev -> dev -> test; each step is a gap:
avoidable bias, variance, data mismatch, overfitting to the dev set. The largest one is where
the next idea pays most.
"""

from __future__ import annotations

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


def diagnose(errors: dict, human_level_error: float | None) -> dict:
    """summary.json's "diagnosis": the four signed gaps (None where a split is missing), the
    focus (the largest gap that is not None; ties go to the earlier gap, bias before variance,
    as the basic recipe orders them) and the advice for that focus."""
    train, train_dev, dev, test = (errors.get(k) for k in ("train", "train_dev", "dev", "test"))
    gaps = {
        "avoidable_bias": _gap(train, human_level_error),
        "variance": _gap(train_dev if train_dev is not None else dev, train),
        "data_mismatch": _gap(dev, train_dev),
        "dev_overfitting": _gap(test, dev),
    }
    known = [name for name in GAPS if gaps[name] is not None]
    focus = max(known, key=gaps.get) if known else None  # max keeps the first of equal gaps
    return {**gaps, "focus": focus, "advice": list(ADVICE.get(focus, []))}


def _gap(upper, lower):
    if upper is None or lower is None:
        return None
    # 12 decimals: float noise (0.088 - 0.005 = 0.08299999999999999) neither shows in
    # summary.json nor decides a tie between equal gaps
    return round(float(upper) - float(lower), 12)
