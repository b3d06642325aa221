"""Checks of a recipe against the data it got, made before any run directory exists.

Each failure is bad input (exit 2) naming the recipe key, so that a recipe that cannot run
as written never starts, and never leaves a run directory without a summary behind.
"""

from __future__ import annotations

from .errors import BadInput

CLASSIFIER_LOSSES = ("binary_crossentropy", "categorical_crossentropy")


def check_training(recipe, model, dataset) -> None:
    """What `fit` and `finish` will ask of the data: the split early stopping watches, a
    positive class that is one of the classes."""
    stopping = recipe.training.early_stopping
    if stopping is not None and stopping.metric.startswith("dev_") and "dev" not in dataset.splits:
        raise recipe.error("training.early_stopping.metric", (
            f"{stopping.metric} needs a dev split, and the recipe has none: add data.dev "
            "(a fraction or a source) or watch train_error / train_cost"))
    if model.loss.name in CLASSIFIER_LOSSES and dataset.n_classes:
        positive = recipe.evaluation.positive_class
        if positive >= dataset.n_classes:
            raise recipe.error("evaluation.positive_class", (
                f"{positive} is not one of the classes 0..{dataset.n_classes - 1}"))


def held_out_label_range(recipe, dataset, limit: int) -> None:
    """A label >= `limit` (what the output can give) that only a held-out source holds is that
    source's fault, not the model's: name its file and key."""
    train = dataset.splits["train"].y
    if train.size and int(train.max()) >= limit:
        return  # the train labels themselves: the model is what does not fit
    for name, origin in (dataset.origins or {}).items():
        y = dataset.splits[name].y
        if y.size and int(y.max()) >= limit:
            raise BadInput(f"{origin}: label {int(y.max())} is out of range: the train labels and "
                           f"the model's output give classes 0..{limit - 1}",
                           key=f"data.{name}.y")
