"""dlcli.metrics against scikit-learn (zero_division=0), on random and degenerate cases."""

import numpy as np
import pytest
from sklearn import metrics as sk

from dlcli import metrics


def _assert_matches_sklearn(y_true, y_pred, labels):
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, labels),
                                  sk.confusion_matrix(y_true, y_pred, labels=labels))
    rows = metrics.per_class(y_true, y_pred, labels)
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                    zero_division=0)
    assert [row["class"] for row in rows] == list(labels)
    np.testing.assert_allclose([row["precision"] for row in rows], p, atol=1e-12)
    np.testing.assert_allclose([row["recall"] for row in rows], r, atol=1e-12)
    np.testing.assert_allclose([row["f1"] for row in rows], f, atol=1e-12)
    assert [row["support"] for row in rows] == list(s)
    for average, ours in (("macro", metrics.macro_average(rows)),
                          ("weighted", metrics.weighted_average(rows))):
        p, r, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                        average=average, zero_division=0)
        assert ours == pytest.approx({"precision": p, "recall": r, "f1": f}, abs=1e-12), average


@pytest.mark.parametrize("seed", range(8))
def test_random_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 7))
    m = int(rng.integers(1, 60))
    _assert_matches_sklearn(rng.integers(0, c, m), rng.integers(0, c, m), list(range(c)))


def test_a_class_never_predicted():
    y_true = np.array([0, 1, 2, 2, 1, 0, 2])
    y_pred = np.array([0, 0, 2, 2, 0, 0, 2])
    _assert_matches_sklearn(y_true, y_pred, [0, 1, 2])
    assert metrics.per_class(y_true, y_pred, [0, 1, 2])[1]["precision"] == 0.0


def test_a_class_absent_from_the_labels():
    y_true = np.array([0, 0, 2, 2, 0])
    y_pred = np.array([0, 1, 2, 1, 0])
    _assert_matches_sklearn(y_true, y_pred, [0, 1, 2])
    row = metrics.per_class(y_true, y_pred, [0, 1, 2])[1]
    assert (row["recall"], row["f1"], row["support"]) == (0.0, 0.0, 0)


def test_a_class_neither_present_nor_predicted():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 1, 1, 1])
    _assert_matches_sklearn(y_true, y_pred, [0, 1, 2])


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_a_single_class():
    y = np.array([1, 1, 1])
    _assert_matches_sklearn(y, y, [1])
    assert metrics.per_class(y, y, [1]) == [
        {"class": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}]


def test_labels_outside_the_list_are_left_out_and_column_vectors_accepted():
    y_true = np.array([[0], [1], [5], [1]])
    y_pred = np.array([[0], [5], [1], [1]])
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, [1, 0]),
                                  sk.confusion_matrix(y_true.ravel(), y_pred.ravel(), labels=[1, 0]))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("positive", [0, 1])
def test_binary_scores_match_sklearn(seed, positive):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    got = metrics.binary_scores(y_true.reshape(-1, 1), y_pred, positive_class=positive)
    p, r, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, pos_label=positive,
                                                    average="binary", zero_division=0)
    assert got == pytest.approx({"precision": p, "recall": r, "f1": f,
                                 "accuracy": sk.accuracy_score(y_true, y_pred)})


def test_binary_scores_with_no_positive_prediction():
    got = metrics.binary_scores(np.array([1, 0, 1]), np.array([0, 0, 0]))
    assert got == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": pytest.approx(1 / 3)}


@pytest.mark.parametrize("seed", range(5))
def test_multi_label_ignores_unlabelled_entries(seed):
    rng = np.random.default_rng(seed)
    m, k = 30, 4
    y_true = rng.integers(0, 2, (m, k))
    y_true[rng.random((m, k)) < 0.3] = -1
    y_true[:, 3] = np.where(y_true[:, 3] == 1, 0, y_true[:, 3])   # a label never positive
    y_pred = rng.integers(0, 2, (m, k))
    rows = metrics.per_label(y_true, y_pred)
    mcm = metrics.multilabel_confusion(y_true, y_pred)
    for j, row in enumerate(rows):
        present = y_true[:, j] != -1
        t, p = y_true[present, j], y_pred[present, j]
        sp, sr, sf, ss = sk.precision_recall_fscore_support(t, p, labels=[1], zero_division=0)
        assert row == pytest.approx({"class": j, "precision": sp[0], "recall": sr[0],
                                     "f1": sf[0], "support": ss[0]})
        np.testing.assert_array_equal(mcm[j], sk.confusion_matrix(t, p, labels=[0, 1]))
