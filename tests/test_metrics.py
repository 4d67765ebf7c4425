"""GLUE-style metrics against hand-computed values and against scikit-learn / SciPy called directly."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from genpt.data.tasks import BUILTIN_TASKS
from genpt.errors import GenptError
from genpt.metrics import METRICS, compute, primary_metric

# tp = 2 (items 0, 4), fp = 1 (item 1), fn = 1 (item 3), tn = 1 (item 2)
PREDICTED = [1, 1, 0, 0, 1]
REFERENCE = [1, 0, 0, 1, 1]


def test_class_metrics_match_hand_computed_values():
    got = compute(["accuracy", "f1", "mcc"], PREDICTED, REFERENCE)
    precision = recall = 2 / 3
    assert got["accuracy"] == pytest.approx(3 / 5)
    assert got["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert got["mcc"] == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))  # (tp·tn − fp·fn) / √…
    assert list(got) == ["accuracy", "f1", "mcc"]


def test_correlations_match_hand_computed_values():
    got = compute(["pearson", "spearman"], [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert got["pearson"] == pytest.approx(9 / math.sqrt(84))  # cov 3 / √(2 · 42/9)
    assert got["spearman"] == pytest.approx(1.0)  # same order
    assert compute(["spearman"], [1, 2, 3], [3, 2, 1])["spearman"] == pytest.approx(-1.0)


def test_metrics_agree_with_sklearn_and_scipy_on_random_data():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    got = compute(["accuracy", "f1", "mcc"], p.tolist(), y.tolist())
    assert got == pytest.approx({"accuracy": accuracy_score(y, p), "f1": f1_score(y, p),
                                 "mcc": matthews_corrcoef(y, p)}, abs=1e-12)
    y3 = rng.integers(0, 3, 500)
    p3 = np.where(rng.random(500) < 0.6, y3, rng.integers(0, 3, 500))  # right 60% of the time, else random
    assert compute(["mcc", "accuracy"], p3, y3) == pytest.approx(  # MNLI-style three classes
        {"mcc": matthews_corrcoef(y3, p3), "accuracy": accuracy_score(y3, p3)}, abs=1e-12)
    a = rng.normal(size=300)
    b = a + rng.normal(size=300)
    got = compute(["pearson", "spearman"], a, b)
    assert got == pytest.approx({"pearson": pearsonr(a, b).statistic, "spearman": spearmanr(a, b).statistic},
                                abs=1e-12)


def test_results_are_plain_floats():
    got = compute(list(METRICS[:3]), np.array(PREDICTED), np.array(REFERENCE))
    got |= compute(["pearson", "spearman"], np.array([0.5, 1.5, 4.0]), np.array([0.0, 2.0, 3.5]))
    assert all(type(v) is float for v in got.values())


def test_constant_predictions_score_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute(["mcc", "f1"], [0, 0, 0, 0], [0, 1, 0, 1]) == {"mcc": 0.0, "f1": 0.0}
        flat = compute(["pearson", "spearman"], [2.5] * 4, [0.0, 1.0, 2.0, 5.0])
        assert flat == {"pearson": 0.0, "spearman": 0.0}
        assert compute(["pearson"], [1.0], [2.0]) == {"pearson": 0.0}


def test_mistakes_are_refused():
    with pytest.raises(GenptError, match="unknown metric.*bleu.*expected some of accuracy"):
        compute(["bleu"], [1], [1])
    with pytest.raises(ValueError, match="equally long"):
        compute(["accuracy"], [1, 0], [1])
    with pytest.raises(ValueError, match="non-empty"):
        compute(["accuracy"], [], [])


def test_primary_metric_is_the_first_listed():
    assert primary_metric(["f1", "accuracy"]) == "f1"
    assert primary_metric(BUILTIN_TASKS["stsb"].metrics) == "pearson"
    assert primary_metric(BUILTIN_TASKS["cola"].metrics) == "mcc"
    with pytest.raises(GenptError):
        primary_metric([])


def test_every_builtin_tasks_metrics_compute_on_its_kind_of_labels():
    for spec in BUILTIN_TASKS.values():
        if spec.target == "score":
            got = compute(spec.metrics, [0.5, 4.0, 2.0], [1.0, 5.0, 2.5])
        else:
            n = max(len(spec.label_names), spec.num_choices)
            got = compute(spec.metrics, [i % n for i in range(6)], [(i * 7) % n for i in range(6)])
        assert set(got) == set(spec.metrics) and all(math.isfinite(v) for v in got.values()), spec.name
