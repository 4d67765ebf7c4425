"""`model.pad_vocab_multiple`: embedding rows rounded up for faster products, never predicted, invisible outside."""

import dataclasses

import pytest
import torch

from genpt.config import ModelConfig, TrainConfig
from genpt.data.corpus import train_tokenizer
from genpt.errors import GenptError
from genpt.generate import generate
from genpt.interop import convert
from genpt.interop.common import Converted, unpadded
from genpt.interop.genpt import read_genpt, write_genpt
from genpt.kernels.chunked_loss import rows_per_chunk
from genpt.load import load_lm
from genpt.model import GPT
from genpt.train.optimizers import make_optimizer

VOCAB = 100
PLAIN = ModelConfig(vocab_size=VOCAB, n_ctx=32, n_embd=32, n_layer=2, n_head=2)
PADDED = dataclasses.replace(PLAIN, pad_vocab_multiple=64)


def twins() -> tuple[GPT, GPT]:
    """An unpadded model and a padded one holding the same weights, both in eval mode."""
    torch.manual_seed(0)
    plain = GPT(dataclasses.replace(PLAIN)).eval()
    padded = GPT(dataclasses.replace(PADDED)).eval()
    state = plain.state_dict()
    state["tokens_embed.weight"] = torch.cat([state["tokens_embed.weight"], torch.zeros(128 - VOCAB, 32)])
    state["lm_head.weight"] = state["tokens_embed.weight"]
    padded.load_state_dict(state)
    return plain, padded


def test_rows_are_rounded_up_to_the_multiple():
    assert PADDED.padded_vocab_size == 128 and PLAIN.padded_vocab_size == VOCAB
    assert ModelConfig(pad_vocab_multiple=64).padded_vocab_size == 40512  # GPT-1's 40,478 ids
    assert GPT(dataclasses.replace(PADDED)).tokens_embed.weight.shape == (128, 32)


def test_padding_rows_start_at_zero_and_the_head_stays_tied():
    model = GPT(dataclasses.replace(PADDED))
    assert model.lm_head.weight is model.tokens_embed.weight
    assert model.tokens_embed.weight[VOCAB:].abs().max() == 0
    assert model.tokens_embed.weight[:VOCAB].std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("rows", [16, 5 * rows_per_chunk(VOCAB) + 3], ids=["plain-path", "chunked-path"])
def test_logits_loss_and_gradients_equal_the_unpadded_model(rows):
    plain, padded = twins()
    ids = torch.randint(0, VOCAB, (rows // 16 + 1, 17))
    for model in (plain, padded):
        model(ids, labels=ids, return_logits=False).loss.backward()
    want, got = plain(ids, labels=ids), padded(ids, labels=ids)
    assert got.logits.shape == want.logits.shape  # (B, T-1, vocab): a padding id is never a prediction
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.loss, want.loss, rtol=0, atol=1e-6)
    assert padded(ids).logits.size(-1) == VOCAB
    for (name, a), b in zip(plain.named_parameters(), padded.parameters(), strict=True):
        grad = b.grad[:VOCAB] if name == "tokens_embed.weight" else b.grad
        torch.testing.assert_close(grad, a.grad, rtol=0, atol=1e-6, msg=name)
    assert padded.tokens_embed.weight.grad[VOCAB:].abs().max() == 0


@pytest.mark.slow
def test_training_leaves_the_padding_rows_at_zero():
    _, model = twins()
    model.train()
    optimizer = make_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1), torch.device("cpu"))
    for _ in range(5):
        ids = torch.randint(0, VOCAB, (4, 32))
        model(ids, labels=ids, return_logits=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert model.tokens_embed.weight[VOCAB:].abs().max() == 0


def test_generation_is_the_unpadded_models():
    plain, padded = twins()
    prompt = [[1, 2, 3], [4, 5]]
    assert generate(padded, prompt, 10, temperature=0) == generate(plain, prompt, 10, temperature=0)
    sample = lambda model: generate(model, prompt, 10, generator=torch.Generator().manual_seed(3))  # noqa: E731
    assert sample(padded) == sample(plain)


@pytest.fixture
def padded_checkpoint(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    tokenizer = train_tokenizer([text], vocab_size=300)
    config = dataclasses.replace(PADDED, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(1)
    model = GPT(config).eval()
    folder = write_genpt(Converted(config, unpadded(model.state_dict(), config), tokenizer), tmp_path / "genpt")
    return model, folder


def test_a_padded_checkpoint_round_trips_with_its_padding(padded_checkpoint, tmp_path):
    model, folder = padded_checkpoint
    loaded = load_lm(folder)
    assert loaded.config.pad_vocab_multiple == 64 and loaded.tokens_embed.weight.size(0) == 320
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                  strict=True))
    converted = read_genpt(folder)  # the interchange form has no padding rows
    assert converted.state["tokens_embed.weight"].size(0) == model.config.vocab_size


def test_a_padded_model_exports_to_transformers_with_the_same_logits(padded_checkpoint, tmp_path):
    transformers = pytest.importorskip("transformers")
    model, folder = padded_checkpoint
    convert(folder, tmp_path / "hf", target="hf")
    exported = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert exported.config.vocab_size == model.config.vocab_size
    ids = torch.randint(0, model.config.vocab_size, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, model(ids).logits, rtol=0, atol=1e-5)


def test_a_multiple_below_one_is_refused():
    with pytest.raises(GenptError, match="model.pad_vocab_multiple must be positive"):
        ModelConfig(pad_vocab_multiple=0).validate()
