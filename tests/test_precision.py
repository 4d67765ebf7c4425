"""Choosing bf16 autocast or float32 by timing both, with fake step times (no timing in unit tests)."""

import itertools

import torch

from genpt.config import ModelConfig, TrainConfig
from genpt.train.precision import choose_dtype, pick_faster


def fake_steps(fp32: list[float], bf16: list[float]):
    series = {"float32": itertools.cycle(fp32), "bfloat16": itertools.cycle(bf16)}
    calls = []

    def step_seconds(dtype: str) -> float:
        calls.append(dtype)
        return next(series[dtype])

    return step_seconds, calls


def test_bf16_is_chosen_where_its_steps_are_clearly_faster():
    step, _ = fake_steps([1.0], [0.4])
    assert pick_faster(step, seconds=10.0) == "bfloat16"


def test_float32_is_kept_where_bf16_is_slower_or_no_faster():
    step, _ = fake_steps([0.5], [1.0])  # bf16 products at half speed (avx512_bf16 without AMX)
    assert pick_faster(step, seconds=10.0) == "float32"
    step, _ = fake_steps([1.0], [0.98])  # within the margin: not worth the precision
    assert pick_faster(step, seconds=10.0) == "float32"


def test_one_stalled_round_does_not_decide():
    # a busy machine stalls a few bf16 steps (and the first, warm-up round is slow for both)
    step, _ = fake_steps([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], [9.0, 0.5, 8.0, 0.5, 0.5, 0.5])
    assert pick_faster(step, seconds=12.0) == "bfloat16"


def test_measures_until_the_time_is_spent_alternating_dtypes():
    step, calls = fake_steps([1.0], [1.0])
    pick_faster(step, seconds=20.0)
    assert calls[:4] == ["float32", "bfloat16", "float32", "bfloat16"]
    assert len(calls) == 2 * 11  # one warm-up round, then 10 rounds of 2 s fill 20 s


def test_choose_dtype_times_the_real_step_on_cpu():
    config = ModelConfig(vocab_size=64, n_layer=1, n_embd=16, n_head=2, n_ctx=8)
    assert choose_dtype(config, TrainConfig(batch_size=2), torch.device("cpu"), seconds=0.0) in ("float32", "bfloat16")


def test_choose_dtype_times_the_lstms_own_step_for_an_lstm_run(monkeypatch):
    from genpt import architectures
    from genpt.lstm import LSTMLM
    from genpt.train import precision

    built = []
    monkeypatch.setattr(precision, "build_model", lambda c: built.append(architectures.build_model(c)) or built[-1])
    config = ModelConfig(arch="lstm", lstm_hidden=24, vocab_size=64, n_layer=1, n_embd=16, n_head=2, n_ctx=8)
    choose_dtype(config, TrainConfig(batch_size=2), torch.device("cpu"), seconds=0.0)
    assert isinstance(built[0], LSTMLM)


def test_the_choice_is_cached_per_cpu_and_step_and_not_timed_twice(tmp_path, monkeypatch):
    from genpt.kernels import select
    from genpt.train import precision

    timed = []

    def fake_timer(model_config, cfg, device):
        timed.append(cfg.micro_batch)
        return fake_steps([1.0], [0.4])[0]

    monkeypatch.setattr(precision, "train_step_timer", fake_timer)
    cache = select.Cache(tmp_path / "cpu.json")
    saved = select.use(select.Selector("measure", cache))
    try:
        config = ModelConfig(vocab_size=64, n_layer=1, n_embd=16, n_head=2, n_ctx=8)
        cpu = torch.device("cpu")
        assert choose_dtype(config, TrainConfig(batch_size=2), cpu, seconds=2.0) == "bfloat16"
        assert choose_dtype(config, TrainConfig(batch_size=2), cpu, seconds=2.0) == "bfloat16"
        assert timed == [2]  # the second run of the same step reads the cache
        select.use(select.Selector("measure", select.Cache(tmp_path / "cpu.json")))  # a later process
        assert choose_dtype(config, TrainConfig(batch_size=2), cpu, seconds=2.0) == "bfloat16" and timed == [2]
        choose_dtype(config, TrainConfig(batch_size=4), cpu, seconds=2.0)  # another step: timed
        assert timed == [2, 4]
        select.use(select.Selector("first", select.Cache(tmp_path / "other.json")))
        choose_dtype(config, TrainConfig(batch_size=2), cpu, seconds=2.0)  # GENPT_KERNELS=first: timed, not stored
        assert timed == [2, 4, 2] and not (tmp_path / "other.json").exists()
    finally:
        select.use(saved)
