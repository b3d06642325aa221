"""Classification metrics, with scikit-learn's definitions and `zero_division=0`.

A ratio whose denominator is zero (precision of a class never predicted, recall of a class
absent from the labels) is 0, as scikit-learn gives with `zero_division=0`; F1 is
2 tp / (2 tp + fp + fn), which equals the harmonic mean of precision and recall wherever both
are defined and is 0 where scikit-learn's zero_division makes it 0.
"""

from __future__ import annotations

import numpy as np

SCORES = ("precision", "recall", "f1")


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _labels_1d(y):
    y = np.asarray(y)
    return y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y


def _positions(y, labels):
    """Each value's position in `labels`, -1 where it is not one of them."""
    order = np.argsort(labels, kind="stable")
    ranked = labels[order]
    at = np.minimum(np.searchsorted(ranked, y), len(labels) - 1)
    return np.where(ranked[at] == y, order[at], -1)


def confusion_matrix(y_true, y_pred, labels) -> np.ndarray:
    """Counts with rows the true class and columns the predicted class, in `labels` order.

    Examples whose true or predicted class is not in `labels` are left out, as in scikit-learn.
    """
    y_true, y_pred = _labels_1d(y_true), _labels_1d(y_pred)
    labels = np.asarray(labels)
    c = len(labels)
    if c == 0:
        raise ValueError("confusion_matrix needs at least one label")
    t, p = _positions(y_true, labels), _positions(y_pred, labels)
    keep = (t >= 0) & (p >= 0)
    return np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)


def _scores_from_counts(tp, fp, fn):
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def _rows(names, scores, support) -> list[dict]:
    return [{"class": name, **{k: float(scores[k][i]) for k in SCORES}, "support": int(support[i])}
            for i, name in enumerate(names)]


def per_class(y_true, y_pred, labels) -> list[dict]:
    """`{class, precision, recall, f1, support}` for each label, support = true examples."""
    cm = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(cm)
    scores = _scores_from_counts(tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp)
    return _rows([np.asarray(label).item() for label in labels], scores, cm.sum(axis=1))


def macro_average(rows) -> dict:
    """The unweighted mean of each score over the classes (scikit-learn's average='macro')."""
    return {k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in SCORES}


def weighted_average(rows) -> dict:
    """Each score averaged with the classes' supports as weights; 0 with no support at all."""
    support = np.array([r["support"] for r in rows], dtype=np.float64)
    total = support.sum()
    return {k: float(np.dot([r[k] for r in rows], support) / total) if total > 0 else 0.0
            for k in SCORES}


def binary_scores(y_true, y_pred, positive_class=1) -> dict:
    """Precision, recall and F1 of the positive class, and accuracy."""
    y_true, y_pred = _labels_1d(y_true), _labels_1d(y_pred)
    t, p = y_true == positive_class, y_pred == positive_class
    tp = np.sum(t & p)
    scores = _scores_from_counts(tp, np.sum(~t & p), np.sum(t & ~p))
    accuracy = float(np.mean(y_true == y_pred)) if y_true.size else 0.0
    return {**{k: float(scores[k]) for k in SCORES}, "accuracy": accuracy}


def multilabel_confusion(y_true, y_pred) -> np.ndarray:
    """(k, 2, 2) counts `[[tn, fp], [fn, tp]]` per label, over the entries labelled 0 or 1.

    -1 in y_true means "not labelled": that entry counts nowhere.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = y_true != -1
    t, p = (y_true == 1) & present, (y_pred == 1) & present
    tp = np.sum(t & p, axis=0)
    fp = np.sum(~t & p, axis=0)
    fn = np.sum(t & ~p, axis=0)
    tn = np.sum(present, axis=0) - tp - fp - fn
    return np.stack([np.stack([tn, fp], axis=-1), np.stack([fn, tp], axis=-1)], axis=1)


def per_label(y_true, y_pred) -> list[dict]:
    """Multi-label: `{class, precision, recall, f1, support}` per label (column), entries of -1
    ignored; support = the examples labelled 1, as scikit-learn counts it."""
    mcm = multilabel_confusion(y_true, y_pred)
    tp, fp, fn = mcm[:, 1, 1], mcm[:, 0, 1], mcm[:, 1, 0]
    return _rows(list(range(mcm.shape[0])), _scores_from_counts(tp, fp, fn), tp + fn)


def multiclass_scores(y_true, y_pred, n_classes, names=None) -> dict:
    """summary.json's metrics of a multi-class split: macro precision / recall / F1 (the
    unweighted mean over classes, scikit-learn's average="macro"), accuracy, and a row per
    class (`class`, `name` where known, precision, recall, f1, support)."""
    y_true, y_pred = _labels_1d(np.asarray(y_true)), _labels_1d(np.asarray(y_pred))
    rows = per_class(y_true, y_pred, list(range(n_classes)))
    if names:
        for row in rows:
            row["name"] = str(names[row["class"]]) if row["class"] < len(names) else None
    accuracy = float(np.mean(y_true == y_pred)) if y_true.size else 0.0
    return {**macro_average(rows), "accuracy": accuracy, "average": "macro", "per_class": rows}
