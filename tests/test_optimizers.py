"""`train.optimizer`: GPT-1's AdamW by default; Muon on the blocks' matrices with AdamW on the rest."""

import io

import pytest
import torch

from genpt.config import ModelConfig, TrainConfig
from genpt.errors import GenptError
from genpt.model import GPT, GPTForTask
from genpt.train.optimizers import MuonWithAdamW, hidden_matrices, make_optimizer, set_learning_rate

CPU = torch.device("cpu")
TINY = ModelConfig(vocab_size=50, n_ctx=16, n_embd=32, n_layer=2, n_head=2)


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**vars(TINY)))


def step(model: GPT, optimizer, seed: int, lr: float | None = None) -> float:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TINY.vocab_size, (4, TINY.n_ctx), generator=g)
    torch.manual_seed(seed)  # the dropout masks
    set_learning_rate(optimizer, lr or 1e-3 * (1 + seed % 3))  # by default a rate that changes, like a schedule
    loss = model(ids, labels=ids, return_logits=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def test_adamw_is_the_default_and_decays_matrices_only():
    model = tiny_gpt()
    optimizer = make_optimizer(model, TrainConfig(), CPU)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and decay["weight_decay"] == 0.01
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


def test_muon_takes_the_block_matrices_and_adamw_everything_else_once():
    model = GPTForTask(ModelConfig(**vars(TINY)), "classification", n_out=3)
    optimizer = make_optimizer(model, TrainConfig(optimizer="muon"), CPU)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in optimizer.muon.param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in optimizer.adamw.param_groups for p in g["params"]}
    assert muon == {f"gpt.h.{i}.{m}.weight" for i in range(2)
                    for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    # The tied embedding / LM head, the positions and the task head stay on AdamW; nothing is left out.
    assert {"gpt.tokens_embed.weight", "gpt.positions_embed.weight", "head.linear.weight"} <= adamw
    assert not muon & adamw and muon | adamw == set(names.values())
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.01, 0.0]


def test_the_schedule_sets_both_halves_and_muon_lr_scales_the_matrices():
    optimizer = make_optimizer(tiny_gpt(), TrainConfig(optimizer="muon"), CPU)
    set_learning_rate(optimizer, 1.5e-3)
    assert {g["lr"] for part in optimizer.parts for g in part.param_groups} == {1.5e-3}
    optimizer = make_optimizer(tiny_gpt(), TrainConfig(optimizer="muon", lr=1e-3, muon_lr=4e-3), CPU)
    set_learning_rate(optimizer, 5e-4)
    assert [g["lr"] for g in optimizer.muon.param_groups] == [2e-3]
    assert {g["lr"] for g in optimizer.adamw.param_groups} == {5e-4}


@pytest.mark.slow
def test_muon_lowers_the_loss_of_a_tiny_model():
    model = tiny_gpt()
    optimizer = make_optimizer(model, TrainConfig(optimizer="muon", lr=3e-3), CPU)
    losses = [step(model, optimizer, seed=0, lr=3e-3) for _ in range(30)]  # the same batch: it should be learned
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.slow
def test_saved_and_reloaded_state_continues_exactly_as_uninterrupted():
    cfg = TrainConfig(optimizer="muon", lr=3e-3)
    model = tiny_gpt()
    optimizer = make_optimizer(model, cfg, CPU)
    for i in range(3):
        step(model, optimizer, seed=i)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)

    going_on = [step(model, optimizer, seed=i) for i in range(3, 6)]
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what a checkpoint's optimizer.pt holds
    resumed = tiny_gpt()
    resumed.load_state_dict(saved["model"])
    again = make_optimizer(resumed, cfg, CPU)
    again.load_state_dict(saved["optimizer"])
    assert [step(resumed, again, seed=i) for i in range(3, 6)] == going_on
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed.parameters(), strict=True))


def test_a_resumed_run_keeps_its_own_muon_lr():
    model = tiny_gpt()
    saved = make_optimizer(model, TrainConfig(optimizer="muon", muon_lr=1e-3), CPU).state_dict()
    resumed = make_optimizer(model, TrainConfig(optimizer="muon", muon_lr=5e-3), CPU)
    resumed.load_state_dict(saved)
    set_learning_rate(resumed, 2.5e-4)
    assert resumed.muon.param_groups[0]["lr"] == pytest.approx(5e-3)


def test_state_numbering_follows_the_groups():
    optimizer = make_optimizer(tiny_gpt(), TrainConfig(optimizer="muon"), CPU)
    numbered = [i for g in optimizer.state_dict()["param_groups"] for i in g["params"]]
    assert numbered == list(range(sum(len(g["params"]) for g in optimizer.param_groups)))


def test_state_of_another_optimizer_is_refused():
    model = tiny_gpt()
    adamw = make_optimizer(model, TrainConfig(), CPU)
    with pytest.raises(ValueError, match="another train.optimizer"):
        make_optimizer(model, TrainConfig(optimizer="muon"), CPU).load_state_dict(adamw.state_dict())


def test_hidden_matrices_of_a_model_without_blocks_is_empty():
    assert hidden_matrices(torch.nn.Linear(3, 3)) == []
    with pytest.raises(GenptError, match="no Transformer block matrices"):
        MuonWithAdamW(torch.nn.Linear(3, 3), TrainConfig(optimizer="muon"), CPU)


@pytest.mark.parametrize("settings, message", [
    ({"optimizer": "sgd"}, "train.optimizer must be adamw or muon"),
    ({"optimizer": "muon", "strategy": "fsdp"}, "needs whole matrices"),
    ({"optimizer": "muon", "muon_momentum": 1.0}, "train.muon_momentum"),
])
def test_bad_optimizer_settings_are_refused(settings, message):
    with pytest.raises(GenptError, match=message):
        TrainConfig(**settings).validate()
