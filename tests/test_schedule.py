"""Learning-rate schedules: GPT-1's linear warm-up then cosine (pre-training) or linear (fine-tuning)."""

import math

import pytest

from genpt.train.schedule import learning_rate


def test_warmup_is_linear_then_cosine_reaches_zero():
    lr = lambda s: learning_rate(s, peak=2.5e-4, warmup=2000, total=100_000, schedule="cosine")  # noqa: E731
    assert lr(0) == pytest.approx(2.5e-4 / 2000)
    assert lr(999) == pytest.approx(2.5e-4 / 2)
    assert lr(1999) == pytest.approx(2.5e-4)
    mid = 2000 + (100_000 - 2000) // 2
    assert lr(mid) == pytest.approx(2.5e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-3)
    assert lr(100_000) == pytest.approx(0.0, abs=1e-12)


def test_linear_decay_for_fine_tuning():
    lr = lambda s: learning_rate(s, peak=6.25e-5, warmup=2, total=102, schedule="linear")  # noqa: E731
    assert lr(1) == pytest.approx(6.25e-5)
    assert lr(52) == pytest.approx(6.25e-5 / 2)
    assert lr(102) == pytest.approx(0.0)
