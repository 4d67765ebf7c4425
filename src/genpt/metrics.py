"""GLUE-style evaluation metrics by name: accuracy, F1, Matthews correlation, Pearson and Spearman.

Values are fractions (accuracy 0.913, not 91.3) as plain floats. The conventions where a metric is
undefined, chosen so that a score is always a number that can be compared across epochs:

- ``f1`` is binary with class id 1 as the positive class; with no positive predictions and no
  positive references it is 0.0 (scikit-learn's ``zero_division=0``).
- ``mcc`` is 0.0 when either side is constant (scikit-learn's convention: no better than chance).
- ``pearson`` and ``spearman`` are 0.0, not NaN, when either side is constant or there are fewer
  than two items: a model that predicts one score for everything has shown no correlation, and a
  NaN would make "the best epoch" meaningless (every comparison with NaN is false).
"""

import math
from collections.abc import Callable, Sequence

import numpy as np

from genpt.errors import GenptError

METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")


def compute(names: Sequence[str], predictions: Sequence, references: Sequence) -> dict[str, float]:
    """Each named metric of `predictions` against `references` (class ids, or scores for correlations)."""
    if unknown := [name for name in names if name not in METRICS]:
        raise GenptError(f"unknown metric(s) {', '.join(unknown)}; expected some of {', '.join(METRICS)}")
    predicted, reference = np.asarray(predictions), np.asarray(references)
    if predicted.ndim != 1 or predicted.shape != reference.shape or not len(predicted):
        raise ValueError(f"metrics need two equally long, non-empty 1-D sequences; got shapes "
                         f"{predicted.shape} and {reference.shape}")
    return {name: float(_FUNCTIONS[name](predicted, reference)) for name in names}


# scikit-learn and SciPy take about a second to import, so they load only when a metric is computed.
def _accuracy(predicted: np.ndarray, reference: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(reference, predicted)


def _f1(predicted: np.ndarray, reference: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return f1_score(reference, predicted, pos_label=1, average="binary", zero_division=0.0)


def _mcc(predicted: np.ndarray, reference: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return matthews_corrcoef(reference, predicted)


def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def correlation(predicted: np.ndarray, reference: np.ndarray) -> float:
        import scipy.stats

        x, y = predicted.astype(np.float64), reference.astype(np.float64)
        if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return 0.0  # undefined (SciPy would warn and return NaN): see the module docstring
        return getattr(scipy.stats, kind)(x, y).statistic

    return correlation


def standard_error(name: str, value: float, n: int) -> float:
    """How far a score measured on `n` examples wanders from the model's true one, one standard error: the
    binomial sqrt(p(1 - p) / n) for accuracy, and for the correlations (the MCC is Pearson's r of two binary
    variables) the large-sample (1 - r^2) / sqrt(n - 1). F1 has no such closed form and is not served."""
    if n < 2:
        raise ValueError(f"a standard error needs at least two examples, got {n}")
    if name == "accuracy":
        return math.sqrt(value * (1 - value) / n)
    if name in ("mcc", "pearson", "spearman"):
        return (1 - value**2) / math.sqrt(n - 1)
    raise ValueError(f"no standard error for metric {name!r}; expected accuracy, mcc, pearson or spearman")


_FUNCTIONS = {"accuracy": _accuracy, "f1": _f1, "mcc": _mcc,
              "pearson": _correlation("pearsonr"), "spearman": _correlation("spearmanr")}
