"""GLUE-style metrics against hand-computed values and scikit-learn / SciPy reference values."""

import math
import warnings

import numpy as np
import pytest

from genpt.data.tasks import BUILTIN_TASKS
from genpt.errors import GenptError
from genpt.metrics import METRICS, compute, standard_error

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


# Three classes (MNLI-style) and scores with ties; the reference values are scikit-learn's and SciPy's on these
# lists (matthews_corrcoef, pearsonr, spearmanr), beside the textbook formulas that give them.
Y3 = [0, 1, 2, 2, 1, 0, 2, 1, 1, 0]
P3 = [0, 2, 2, 1, 1, 0, 2, 0, 1, 0]
A = [0.5, 2.0, 2.0, 3.5, 4.0, 1.0]
B = [1.0, 1.5, 3.0, 3.0, 5.0, 0.0]


def test_multiclass_mcc_matches_sklearn_and_the_confusion_matrix_formula():
    confusion = np.zeros((3, 3))
    for y, p in zip(Y3, P3, strict=True):
        confusion[y, p] += 1
    t, pk, c, s = confusion.sum(1), confusion.sum(0), np.trace(confusion), confusion.sum()
    gorodkin = (c * s - t @ pk) / math.sqrt((s**2 - pk @ pk) * (s**2 - t @ t))
    got = compute(["mcc", "accuracy"], P3, Y3)
    assert gorodkin == pytest.approx(0.5606060606060606, abs=1e-12)
    assert got["mcc"] == pytest.approx(0.5606060606060606, abs=1e-12)
    assert got["accuracy"] == pytest.approx(0.7)


def test_correlations_with_ties_match_scipy_and_their_formulas():
    def ranks(x):  # 1-based ranks, ties given their average
        order = sorted(x)
        return [order.index(v) + (order.count(v) + 1) / 2 for v in x]

    got = compute(["pearson", "spearman"], A, B)
    assert np.corrcoef(A, B)[0, 1] == pytest.approx(0.8831474289875583, abs=1e-12)
    assert np.corrcoef(ranks(A), ranks(B))[0, 1] == pytest.approx(0.8970588235294118, abs=1e-12)
    assert got == pytest.approx({"pearson": 0.8831474289875583, "spearman": 0.8970588235294118}, abs=1e-12)


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


def test_every_builtin_tasks_metrics_compute_on_its_kind_of_labels():
    for spec in BUILTIN_TASKS.values():
        if spec.target == "score":
            got = compute(spec.metrics, [0.5, 4.0, 2.0], [1.0, 5.0, 2.5])
        else:
            n = max(len(spec.label_names), spec.num_choices)
            got = compute(spec.metrics, [i % n for i in range(6)], [(i * 7) % n for i in range(6)])
        assert set(got) == set(spec.metrics) and all(math.isfinite(v) for v in got.values()), spec.name


def test_standard_errors_match_their_formulas():
    assert standard_error("accuracy", 0.5, 100) == pytest.approx(0.05)  # sqrt(0.25 / 100)
    assert standard_error("accuracy", 0.9, 400) == pytest.approx(0.015)  # sqrt(0.09 / 400)
    assert standard_error("mcc", 0.0, 101) == pytest.approx(0.1)  # (1 - 0) / sqrt(100)
    assert standard_error("pearson", 0.6, 65) == pytest.approx(0.08)  # (1 - 0.36) / sqrt(64)
    with pytest.raises(ValueError, match="no standard error for metric 'f1'"):
        standard_error("f1", 0.8, 100)
    with pytest.raises(ValueError, match="at least two examples"):
        standard_error("accuracy", 0.5, 1)
