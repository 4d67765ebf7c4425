"""bench/in_context_copying.py: the first reading and the repeat scored on the right tokens."""

import math

import pytest
import torch
from conftest import bench_script

from genpt.config import ModelConfig
from genpt.model import GPT


@pytest.fixture(scope="module")
def probe():
    with bench_script("in_context_copying") as module:
        yield module


class CountingTokenizer:
    """Encodes any text as the ids 1..length (a stand-in: the probe only needs `encode`)."""

    def __init__(self, length: int):
        self.length = length

    def encode(self, text: str) -> list[int]:
        return list(range(1, self.length + 1))


def tiny_gpt(vocab: int = 50, n_ctx: int = 32) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=vocab, n_ctx=n_ctx, n_embd=16, n_layer=1, n_head=2))


def test_a_model_that_predicts_uniformly_reads_the_repeat_as_new(probe):
    model = tiny_gpt()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every hidden state 0, so every logit 0: each token costs ln V
    result = probe.copying(model, CountingTokenizer(10), ["a sentence", "another"])
    assert result.first == pytest.approx(math.log(50), rel=1e-6)
    assert result.repeat == pytest.approx(math.log(50), rel=1e-6)
    assert result.drop == pytest.approx(0.0, abs=1e-6)


def test_the_two_readings_are_split_where_the_repeat_begins(probe, monkeypatch):
    """Token t's log-probability is -t: the first reading scores tokens 1..n-1, the repeat tokens n..2n-1."""
    n = 5
    monkeypatch.setattr(probe, "token_logprobs", lambda model, ids: [-float(t) for t in range(1, len(ids))])
    result = probe.copying(tiny_gpt(), CountingTokenizer(n), ["x"])
    assert result.first == pytest.approx(sum(range(1, n)) / (n - 1))
    assert result.repeat == pytest.approx(sum(range(n, 2 * n)) / n)


def test_a_long_sentence_is_cut_so_both_readings_fit_one_context(probe, monkeypatch):
    lengths = []
    monkeypatch.setattr(probe, "token_logprobs", lambda model, ids: lengths.append(len(ids)) or [-1.0] * (len(ids) - 1))
    probe.copying(tiny_gpt(n_ctx=32), CountingTokenizer(100), ["a long sentence"])
    assert lengths == [32]
