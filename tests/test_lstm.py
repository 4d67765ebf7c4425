"""The LSTM baseline: shapes, its loss against a hand-written LSTM, tied weights, and the genpt paths it
must share with the decoder (pre-training, checkpoints, fine-tuning, generation)."""

import json

import pytest
import torch
import torch.nn.functional as F

from genpt import checkpoint as ckpt
from genpt.architectures import build_model
from genpt.config import FinetuneConfig, ModelConfig, PretrainConfig
from genpt.data.tasks import Example, builtin_task
from genpt.errors import GenptError
from genpt.generate import generate
from genpt.interop import convert
from genpt.load import load_finetuned, load_lm
from genpt.lstm import LSTMLM
from genpt.model import GPT
from genpt.predict import predict
from genpt.train.finetune import finetune
from genpt.train.metrics_log import read_metrics
from genpt.train.pretrain import pretrain


def tiny(**overrides) -> ModelConfig:
    values = dict(arch="lstm", vocab_size=50, n_ctx=16, n_embd=8, lstm_hidden=12, n_head=3, embd_pdrop=0.0,
                  resid_pdrop=0.0, pad_vocab_multiple=8)
    return ModelConfig(**{**values, **overrides})


def hand_lstm_logits(model: LSTMLM, ids: torch.Tensor) -> torch.Tensor:
    """The LSTM's equations written out (gates i, f, g, o in PyTorch's order), then the tied head."""
    lstm = model.lstm
    w_ih, w_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    x = model.tokens_embed.weight[ids]
    B, T, _ = x.shape
    h = c = torch.zeros(B, lstm.hidden_size, dtype=torch.float64)
    outs = []
    for t in range(T):
        i, f, g, o = (x[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, dim=-1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        outs.append(h)
    states = torch.stack(outs, dim=1) @ model.proj.weight.T
    return (states @ model.tokens_embed.weight.T)[..., : model.config.vocab_size]


def test_shapes_of_states_logits_and_loss():
    model = build_model(tiny()).eval()
    assert isinstance(model, LSTMLM)
    ids = torch.randint(0, 50, (3, 10))
    h, (h_n, c_n) = model.hidden(ids)
    assert h.shape == (3, 10, 8) and h_n.shape == c_n.shape == (1, 3, 12)
    assert model.logits(h).shape == (3, 10, 50)  # the padding rows (50 -> 56) are never scored
    out = model(ids, labels=ids)
    assert out.logits.shape == (3, 9, 50) and out.loss.shape == ()
    assert model(ids).logits.shape == (3, 10, 50)


def test_loss_is_the_cross_entropy_of_a_hand_written_lstm():
    model = build_model(tiny()).double().eval()
    ids = torch.randint(0, 50, (2, 12))
    labels = ids.clone()
    labels[0, 5] = -100  # ignored, as in the decoder
    logits = hand_lstm_logits(model, ids)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=-100)
    out = model(ids, labels=labels)
    torch.testing.assert_close(out.logits, logits[:, :-1])
    # genpt takes the cross-entropy in float32 whatever the model's dtype
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model(ids, labels=labels, return_logits=False).loss.double(), expected,
                               rtol=1e-6, atol=1e-6)


def test_input_and_output_embeddings_are_one_tensor_with_a_projection_only_when_widths_differ():
    model = build_model(tiny())
    assert model.lm_head.weight is model.tokens_embed.weight
    assert model.proj is not None and model.proj.weight.shape == (8, 12)
    assert build_model(tiny(lstm_hidden=0)).proj is None
    assert build_model(tiny(lstm_hidden=8)).proj is None
    ids = torch.randint(0, 50, (2, 6))
    model(ids, labels=ids).loss.backward()
    assert model.tokens_embed.weight.grad.abs().sum() > 0
    counted = sum(p.numel() for name, p in model.named_parameters())  # named_parameters lists a tied tensor once
    assert model.num_parameters() == counted == 56 * 8 + 4 * 12 * (8 + 12 + 2) + 12 * 8


def test_arch_setting_is_validated_and_picks_the_model():
    assert isinstance(build_model(ModelConfig(n_layer=1, n_embd=8, n_head=2, n_ctx=8, vocab_size=20)), GPT)
    with pytest.raises(GenptError, match="model.arch must be one of transformer, lstm, got 'gru'"):
        build_model(tiny(arch="gru"))
    with pytest.raises(GenptError, match="model.lstm_hidden must not be negative"):
        tiny(lstm_hidden=-1).validate()
    tiny(n_head=3).validate()  # heads do not apply to the LSTM


def test_muon_is_refused_for_the_lstm_with_the_setting_to_use():
    config = PretrainConfig(model=tiny(arch="lstm"))
    config.train.optimizer = "muon"
    with pytest.raises(GenptError, match="model.arch=lstm has none: use train.optimizer=adamw"):
        config.validate()


def test_cached_state_continues_the_sequence_and_generation_uses_it():
    model = build_model(tiny()).eval()
    ids = torch.randint(0, 50, (1, 9))
    whole, _ = model.hidden(ids)
    first, state = model.hidden(ids[:, :5])
    rest, _ = model.hidden(ids[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)
    out = generate(model, ids[:, :4], 20, temperature=0)  # slides past n_ctx = 16
    assert out.shape == (1, 24) and torch.equal(out[:, :4], ids[:, :4])
    with pytest.raises(ValueError, match="cannot mask left padding"):
        generate(model, [[1, 2, 3], [4]], 2)


@pytest.fixture(scope="module")
def lstm_run(shards, tmp_path_factory):
    config = PretrainConfig()
    config.model = tiny(n_ctx=32, n_embd=32, lstm_hidden=64, embd_pdrop=0.1, resid_pdrop=0.1)
    train = config.train
    train.batch_size, train.max_steps, train.warmup_steps, train.lr = 8, 60, 5, 1e-2
    train.log_interval, train.eval_interval, train.eval_batches, train.checkpoint_interval = 5, 20, 4, 20
    config.data.shards = str(shards)
    run = tmp_path_factory.mktemp("lstm") / "run"
    pretrain(config, run, progress=False)
    return run


def test_pretraining_the_lstm_lowers_training_and_validation_loss(lstm_run):
    rows = read_metrics(lstm_run)
    train = [r["loss"] for r in rows if r["split"] == "train"]
    val = [r["loss"] for r in rows if r["split"] == "val"]
    assert train[-1] < train[0] - 0.5 and val[-1] < val[0]


def test_checkpoint_records_the_arch_and_loads_back_to_the_same_logits(lstm_run):
    checkpoint = ckpt.latest_checkpoint(lstm_run)
    assert json.loads((checkpoint / "config.json").read_text())["model"]["arch"] == "lstm"
    loaded = load_lm(lstm_run)
    assert isinstance(loaded, LSTMLM)
    twin = build_model(loaded.config).eval()
    ckpt.load_weights(twin, checkpoint)
    ids = torch.randint(0, 50, (2, 20))
    torch.testing.assert_close(loaded(ids).logits, twin(ids).logits)
    assert not torch.equal(twin(ids).logits, build_model(loaded.config).eval()(ids).logits)
    with pytest.raises(GenptError, match="model.arch is lstm; only the Transformer"):
        convert(lstm_run, lstm_run.parent / "hf", target="hf")


def test_lstm_fine_tunes_with_the_task_heads_and_predicts(lstm_run, tmp_path):
    task = builtin_task("sst2")
    words = ["good fun", "bad film", "a great play", "dull and slow", "lovely", "awful acting"]
    examples = [Example((w,), i % 2, f"x:{i}") for i, w in enumerate(words * 4)]
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-3)
    result = finetune(lstm_run, task, "train", "dev", tmp_path / "ft", cfg, train_examples=examples,
                      dev_examples=examples[:8], progress=False)
    assert len(result.epochs) == 2 and 0.0 <= result.best["accuracy"] <= 1.0
    finetuned = load_finetuned(tmp_path / "ft")
    assert isinstance(finetuned.model.gpt, LSTMLM)
    assert len(predict(finetuned, examples[:5]).predicted) == 5
    with pytest.raises(GenptError, match="--transfer-layers counts Transformer blocks"):
        finetune(lstm_run, task, "train", None, tmp_path / "ft2", FinetuneConfig(transfer_layers=1),
                 train_examples=examples, progress=False)
