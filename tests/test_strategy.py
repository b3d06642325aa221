"""The diagnosis against the course's ML-strategy case studies (COURSE_NUMBERS.md section 12)."""

import json
import math

import pytest

from dlcli.strategy import ADVICE, GAPS, diagnose


def errors(train=None, train_dev=None, dev=None, test=None):
    return {"train": train, "train_dev": train_dev, "dev": dev, "test": test}


def test_autonomous_driving():
    d = diagnose(errors(0.088, 0.091, 0.143, 0.148), 0.005)
    assert d["avoidable_bias"] == pytest.approx(0.083)
    assert d["variance"] == pytest.approx(0.003)
    assert d["data_mismatch"] == pytest.approx(0.052)
    assert d["dev_overfitting"] == pytest.approx(0.005)
    assert d["focus"] == "avoidable_bias"
    assert any("bigger network" in a for a in d["advice"])
    assert any("Adam" in a for a in d["advice"])


def test_is_exactly_the_summary_json_object():
    d = diagnose(errors(0.014, 0.05, 0.16, 0.2), 0.0)
    assert list(d)[:6] == ["avoidable_bias", "variance", "data_mismatch", "dev_overfitting", "focus", "advice"]
    assert set(d["noise"]) == set(GAPS)
    assert (d["avoidable_bias"], d["variance"], d["data_mismatch"], d["dev_overfitting"]) == (0.014, 0.036, 0.11, 0.04)
    assert d["focus"] == "data_mismatch"
    assert d["advice"] == ADVICE["data_mismatch"]
    assert any("error analysis" in a for a in d["advice"])
    assert any("synthesis" in a for a in d["advice"])
    json.dumps(d)


def test_peacetopia_without_human_level_has_no_avoidable_bias():
    d = diagnose(errors(0.04, dev=0.045), None)
    assert d["avoidable_bias"] is None
    assert d["variance"] == 0.005  # dev - train when there is no train-dev set
    assert d["data_mismatch"] is None and d["dev_overfitting"] is None
    assert d["focus"] == "variance"
    assert any("regularization" in a.lower() for a in d["advice"])


def test_peacetopia_bias_then_dev_overfitting():
    d = diagnose(errors(0.02, dev=0.021), 0.001)
    assert (d["avoidable_bias"], d["variance"]) == (0.019, 0.001)
    assert d["focus"] == "avoidable_bias"
    d = diagnose(errors(0.02, dev=0.021, test=0.07), 0.001)
    assert d["dev_overfitting"] == 0.049
    assert d["focus"] == "dev_overfitting"
    assert d["advice"] == ["Get a bigger dev set"]


def test_peacetopia_surpassing_human_level():
    d = diagnose(errors(0.0005, dev=0.0005), 0.001)
    assert d["avoidable_bias"] == -0.0005  # signed: the model beats the human-level proxy
    assert d["variance"] == 0.0
    assert d["focus"] is None  # no positive gap: nothing to work on, not "get more data"


def test_all_null():
    d = diagnose(errors(), None)
    assert all(d[g] is None for g in GAPS)
    assert d["focus"] is None and d["advice"] == []
    d = diagnose(errors(train=0.1), None)  # a train error alone has no gap
    assert d["focus"] is None


def test_ties_go_to_the_earlier_gap_despite_float_noise():
    # unrounded, 0.05 - 0.03 = 0.020000000000000004 would beat 0.03 - 0.01 = 0.019999999999999997
    d = diagnose(errors(0.03, dev=0.05), 0.01)
    assert d["avoidable_bias"] == d["variance"] == 0.02
    assert d["focus"] == "avoidable_bias"
    d = diagnose(errors(0.1, 0.2, 0.3, 0.4), None)
    assert d["variance"] == d["data_mismatch"] == d["dev_overfitting"] == 0.1
    assert d["focus"] == "variance"


def test_train_dev_gives_variance_and_data_mismatch():
    d = diagnose(errors(0.01, 0.011, 0.2), None)
    assert d["variance"] == 0.001 and d["data_mismatch"] == 0.189
    assert d["focus"] == "data_mismatch"
    d = diagnose({"train": 0.01, "dev": 0.2}, None)  # absent keys count as missing splits
    assert d["variance"] == 0.19 and d["data_mismatch"] is None


def test_the_focus_is_never_a_negative_gap():
    # issue 9: variance -1.88% was the focus and gave "get more data"
    d = diagnose(errors(0.05, dev=0.0312), None, {"train": 1000, "dev": 1000})
    assert d["variance"] < 0 and d["focus"] is None and d["advice"] == []
    # cat_4layer with --human-level-error 0.01 and a train error of 0: avoidable bias -1.00%
    d = diagnose(errors(0.0, test=0.26), 0.01, {"train": 209, "test": 50})
    assert d["avoidable_bias"] == -0.01
    assert d["focus"] == "variance"
    assert not any("bigger network" in a for a in d["advice"])


def test_noise_is_two_standard_errors_of_the_difference():
    sizes = {"train": 300, "train_dev": 75, "dev": 75, "test": 150}
    d = diagnose(errors(0.0533, 0.08, 0.0933, 0.0867), 0.05, sizes)
    se = lambda e, n: math.sqrt(e * (1 - e) / n)
    assert d["noise"]["avoidable_bias"] == pytest.approx(2 * se(0.0533, 300))  # human-level is exact
    assert d["noise"]["variance"] == pytest.approx(2 * math.hypot(se(0.08, 75), se(0.0533, 300)))
    assert d["noise"]["data_mismatch"] == pytest.approx(2 * math.hypot(se(0.0933, 75), se(0.08, 75)))
    assert d["noise"]["dev_overfitting"] == pytest.approx(2 * math.hypot(se(0.0867, 150), se(0.0933, 75)))
    # every gap here lies within its noise: no focus
    assert all(abs(d[g]) < d["noise"][g] for g in GAPS)
    assert d["focus"] is None


def test_a_one_example_difference_is_not_significant():
    # 0.5% of 200 examples: one example
    d = diagnose(errors(0.0, dev=0.005), None, {"train": 200, "dev": 200})
    assert d["variance"] == 0.005 and d["noise"]["variance"] > 0.005
    assert d["focus"] is None
    # the same gap on a big enough dev set is a finding
    d = diagnose(errors(0.0, dev=0.005), None, {"train": 200_000, "dev": 200_000})
    assert d["focus"] == "variance"


def test_the_focus_is_the_largest_significant_gap_not_the_largest_gap():
    # data mismatch is larger, but measured on 20 examples; variance stands out on 10,000
    sizes = {"train": 10_000, "train_dev": 10_000, "dev": 20}
    d = diagnose(errors(0.01, 0.05, 0.10), None, sizes)
    assert d["data_mismatch"] > d["variance"]
    assert d["data_mismatch"] < d["noise"]["data_mismatch"]
    assert d["focus"] == "variance"


def test_train_and_test_only_is_a_variance_estimate():
    d = diagnose(errors(0.0, test=0.26), None, {"train": 209, "test": 50})
    assert d["variance"] == 0.26 and d["variance_from"] == "test"
    assert d["dev_overfitting"] is None
    assert d["focus"] == "variance"
    d = diagnose(errors(0.0, dev=0.2, test=0.26), None)
    assert d["variance"] == 0.2 and d["variance_from"] == "dev"
