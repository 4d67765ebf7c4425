"""Learning-rate schedules: GPT-1's linear warm-up then cosine (pre-training) or linear (fine-tuning)."""

import math

import pytest

from genpt.config import TrainConfig
from genpt.train.schedule import Budget, learning_rate


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


def test_default_warmup_is_gpt1s_share_of_the_run():
    assert TrainConfig().warmup == 2000  # GPT-1's 2,000 updates at its length
    assert TrainConfig(max_steps=150).warmup == 3  # a short run leaves its warm-up: 2% of it, not 2,000 steps
    assert TrainConfig(max_steps=10).warmup == 1
    assert TrainConfig(max_steps=150, warmup_fraction=0.1).warmup == 15
    assert TrainConfig(max_steps=150, warmup_steps=0).warmup == 0  # an explicit count wins


def test_a_step_budget_positions_the_schedule_by_steps_alone():
    budget = Budget(max_steps=100)
    budget.sync(50, used=1e9, seconds_per_step=1e9)  # the clock has no say without a time budget
    assert budget.position(50) == 50.0
    assert not budget.done(99) and budget.done(100)


def test_a_time_budget_maps_the_time_used_onto_the_step_schedule():
    budget = Budget(max_steps=1000, seconds=60.0)
    budget.sync(10, used=6.0, seconds_per_step=0.6)  # a tenth of the time, after 10 steps
    assert budget.position(10) == pytest.approx(100.0)
    assert budget.position(20) == pytest.approx(200.0)  # projected at 0.6 s a step until the next sync
    assert budget.done(100) and not budget.done(99)  # 100 steps of 0.6 s fill the 60 s
    budget.sync(50, used=15.0, seconds_per_step=0.3)  # the machine got faster
    assert budget.position(50) == pytest.approx(250.0)


def test_a_fast_run_stops_at_max_steps_before_the_time_is_used():
    budget = Budget(max_steps=100, seconds=3600.0)
    budget.sync(90, used=9.0, seconds_per_step=0.1)
    assert budget.position(90) == 90.0 and budget.done(100)
