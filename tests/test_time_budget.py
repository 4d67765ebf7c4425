"""A time-budgeted run plans its own schedule: it ends on time with the rate decayed, on a fast or a
slow machine, and a resumed run continues the same schedule. The clock is a fake that advances a
fixed number of seconds per step, so nothing here depends on the machine's speed."""

import logging

import pytest
import torch

from genpt.config import ModelConfig, TrainConfig
from genpt.model import GPT
from genpt.train.loop import TrainTask, train
from genpt.train.metrics_log import read_metrics

PEAK = 1e-3


class StepClock:
    """A clock that moves `per_step` seconds each time the loop fetches a micro-batch (one per step)."""

    def __init__(self, per_step: float, crash_at: int | None = None):
        self.now, self.per_step, self.crash_at = 0.0, per_step, crash_at

    def __call__(self) -> float:
        return self.now

    def batch(self, index: int) -> torch.Tensor:
        if index == self.crash_at:
            raise RuntimeError("the machine went down")
        self.now += self.per_step
        return torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(index))


def run(run_dir, clock: StepClock, *, minutes: float = 1.0, max_steps: int = 1000, resume: bool = False,
        log_interval: int = 1):
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(batch_size=2, lr=PEAK, lr_schedule="linear", warmup_fraction=0.1, max_steps=max_steps,
                      max_minutes=minutes, log_interval=log_interval, eval_interval=1000, checkpoint_interval=10,
                      device="cpu")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, n_layer=1, n_embd=16, n_head=2, n_ctx=8))
    task = TrainTask(micro_batch=clock.batch, loss=lambda m, ids: m(ids, labels=ids, return_logits=False).loss,
                     tokens=lambda ids: ids.numel())
    return train(model, cfg, task, run_dir, total_steps=max_steps, resume=resume, progress=False, clock=clock)


def rates(run_dir) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in read_metrics(run_dir) if r["split"] == "train"}


@pytest.mark.parametrize("seconds_per_step, steps", [(2.0, 30), (5.0, 12)])
def test_a_time_budget_ends_on_time_with_the_schedule_decayed(tmp_path, seconds_per_step, steps):
    result = run(tmp_path, StepClock(seconds_per_step))
    lr = rates(tmp_path)
    assert result.step == steps and result.stopped_early  # 60 s of steps, far short of max_steps
    assert max(lr.values()) > 0.8 * PEAK  # the warm-up (10% of the time) was left
    assert lr[steps] < 0.1 * PEAK  # and the last steps ran at the end of the decay


def test_a_step_budget_reached_first_ends_the_schedule_by_steps(tmp_path):
    result = run(tmp_path, StepClock(0.01), max_steps=20)
    assert result.step == 20 and not result.stopped_early
    assert rates(tmp_path)[20] == pytest.approx(PEAK * (1 - 18 / 18), abs=PEAK / 10)


def test_resume_continues_the_time_budgeted_schedule(tmp_path):
    run(tmp_path / "whole", StepClock(2.0))
    with pytest.raises(RuntimeError):
        run(tmp_path / "crashed", StepClock(2.0, crash_at=14))  # after the checkpoint at step 10
    result = run(tmp_path / "crashed", StepClock(2.0), resume=True)  # a new process: its clock starts at 0
    assert result.step == 30
    assert rates(tmp_path / "crashed") == pytest.approx(rates(tmp_path / "whole"))


def test_a_machine_slower_than_the_log_interval_still_stops_on_time(tmp_path):
    # 25 s a step against a 60 s budget: the pace is read after steps 1 and 2, not only at the 10th
    result = run(tmp_path, StepClock(25.0), log_interval=10)
    assert result.step == 3 and result.stopped_early


def test_a_run_bounded_by_steps_alone_says_so_without_a_budget_of_minutes(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="genpt"):
        result = run(tmp_path, StepClock(0.01), minutes=0, max_steps=5)
    assert result.step == 5 and not result.stopped_early
    assert "stopping at step 5, its schedule complete" in caplog.text
    assert "minutes" not in caplog.text  # it said "after 0 minutes"
