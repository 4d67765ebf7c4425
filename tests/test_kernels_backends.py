"""train.kernels, train.float8, train.compile_mode: checked settings, and backends that step aside, with one
logged line, where their library or hardware is missing, leaving the model as it was."""

import logging

import pytest
import torch

from genpt.config import ModelConfig, TrainConfig
from genpt.errors import GenptError
from genpt.kernels import float8, liger
from genpt.kernels.backends import apply_backends, tied_head_weight
from genpt.model import GPT, GPTForTask

TINY = ModelConfig(vocab_size=64, n_ctx=16, n_embd=32, n_layer=2, n_head=2)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("kernels", "apex", "train.kernels must be one of torch, liger"),
    ("compile_mode", "fast", "train.compile_mode must be one of default, reduce-overhead"),
])
def test_unknown_values_are_refused(setting, value, message):
    with pytest.raises(GenptError, match=message):
        TrainConfig(**{setting: value}).validate()


def test_backends_are_refused_with_fsdp():
    with pytest.raises(GenptError, match="use train.strategy=ddp"):
        TrainConfig(float8=True, strategy="fsdp").validate()


def test_defaults_are_the_plain_path():
    cfg = TrainConfig()
    cfg.validate()
    assert (cfg.kernels, cfg.float8, cfg.compile_mode) == ("torch", False, "default")


def test_on_the_cpu_each_backend_says_why_it_is_off_and_changes_nothing(caplog, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = GPT(TINY)
    before = [(name, type(m)) for name, m in model.named_modules()]
    with caplog.at_level(logging.WARNING, logger="genpt"):
        applied = apply_backends(model, "liger", True, torch.device("cpu"))
    assert applied == []
    assert [(name, type(m)) for name, m in model.named_modules()] == before
    assert not hasattr(model.lm_head.weight, "genpt_lm_loss")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("train.kernels=liger ignored: ") and "training with torch's kernels" in lines[0]
    assert lines[1].startswith("train.float8 ignored: ")


def test_a_missing_library_is_named(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert liger.missing(torch.device("cuda")) == "liger-kernel (and Triton) are not installed: " \
        "pip install 'genpt[gpu]'"
    assert float8.missing(torch.device("cuda")) == "torchao is not installed: pip install 'genpt[gpu]'"


def test_the_tied_head_is_found_in_the_lm_and_the_task_model():
    lm = GPT(TINY)
    assert tied_head_weight(lm) is lm.tokens_embed.weight
    task = GPTForTask(TINY, "classification", 2)
    assert tied_head_weight(task) is task.gpt.tokens_embed.weight
    assert tied_head_weight(torch.nn.Linear(4, 4)) is None


@pytest.mark.slow
def test_the_compiled_model_hands_its_loss_to_the_backend_on_the_head():
    """How train.kernels=liger reaches the loss: the tied head's weight names a backend that genpt's LM loss
    calls, also from inside torch.compile (the backend runs outside the graph, as liger's must)."""
    from genpt.kernels.chunked_loss import cross_entropy

    calls = []

    @torch.compiler.disable
    def backend(h, weight, targets, vocab):
        calls.append(h.shape)
        return cross_entropy(h @ weight[:vocab].t(), targets, vocab)

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, n_ctx=16, n_embd=32, n_layer=2, n_head=2, embd_pdrop=0.0,
                            attn_pdrop=0.0, resid_pdrop=0.0, pad_vocab_multiple=48))
    ids = torch.randint(0, 64, (2, 16))
    plain = model(ids, labels=ids, return_logits=False).loss
    model.lm_head.weight.genpt_lm_loss = backend
    compiled = torch.compile(model)(ids, labels=ids, return_logits=False).loss
    assert calls == [torch.Size([2, 15, 32])]
    torch.testing.assert_close(compiled, plain, rtol=1e-5, atol=1e-6)
