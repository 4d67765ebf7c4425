"""train.float8: torchao's float8 training of the block linears, checked on the CPU through torchao's
emulation (the same casts and scales, the products in float32): each product equals one computed here
from operands rounded to float8 by hand (exactly), and a whole model's loss and gradients stay within
float8's rounding of the plain path's. What only a GPU shows: `torch._scaled_mm`'s own products and speed."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genpt.config import ModelConfig
from genpt.kernels import float8
from genpt.model import GPT

pytest.importorskip("torchao", reason="torchao is not installed (pip install -e '.[gpu]' or '.[test]')")

TINY = ModelConfig(vocab_size=100, n_ctx=16, n_embd=32, n_layer=2, n_head=2, embd_pdrop=0.0, attn_pdrop=0.0,
                   resid_pdrop=0.0, pad_vocab_multiple=64)
# Whole-model tolerances against the plain float32 path. The output gradient is rounded to e5m2 (2
# mantissa bits: up to 12.5% per element, ~7% RMS) before both backward products, so each block
# matrix's and its layer's bias gradient is off by up to ~9% in L2 norm on this model; 15% bounds it.
# The loss's forward products round to e4m3 (3 bits) and average out over the positions.
LOSS_RTOL = 1e-3
GRAD_REL_L2 = 0.15


def float8_round(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`t` through float8 with one scale for the tensor (its absolute maximum to float8's largest value)."""
    top = torch.finfo(dtype).max
    scale = top / t.detach().abs().max().clamp(min=1e-12).float()
    return (t.detach() * scale).clamp(-top, top).to(dtype).float() / scale


def test_the_block_linears_are_converted_and_the_tied_head_is_not():
    model = GPT(TINY)
    names = float8.apply(model, emulate=True)
    assert names == sorted(f"h.{i}.{m}" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                     "mlp.c_proj"))
    assert type(model.lm_head) is not type(model.h[0].mlp.c_fc)
    assert model.lm_head.weight is model.tokens_embed.weight


def test_parameters_and_state_dict_names_are_unchanged():
    model = GPT(TINY)
    before = {name: p for name, p in model.named_parameters()}
    float8.apply(model, emulate=True)
    assert {name: p for name, p in model.named_parameters()} == before  # the same tensors: optimizer groups hold
    assert list(model.state_dict()) == list(GPT(TINY).state_dict())


def test_each_product_is_that_of_float8_rounded_operands():
    torch.manual_seed(0)
    plain = nn.Linear(64, 32)
    layer = nn.Sequential(copy.deepcopy(plain))
    float8.apply(layer, emulate=True)
    x = torch.randn(8, 64, requires_grad=True)
    grad = torch.randn(8, 32)
    out = layer(x)
    out.backward(grad)
    e4m3, e5m2 = torch.float8_e4m3fn, torch.float8_e5m2
    torch.testing.assert_close(out, F.linear(float8_round(x, e4m3), float8_round(plain.weight, e4m3), plain.bias),
                               rtol=0, atol=0)
    torch.testing.assert_close(x.grad, float8_round(grad, e5m2) @ float8_round(plain.weight, e4m3), rtol=0, atol=0)
    torch.testing.assert_close(layer[0].weight.grad, float8_round(grad, e5m2).t() @ float8_round(x, e4m3),
                               rtol=0, atol=0)
    torch.testing.assert_close(layer[0].bias.grad, grad.sum(0), rtol=0, atol=0)


def test_loss_and_gradients_stay_within_float8_rounding_of_the_plain_path():
    torch.manual_seed(0)
    plain = GPT(TINY)
    converted = copy.deepcopy(plain)
    float8.apply(converted, emulate=True)
    ids = torch.randint(0, TINY.vocab_size, (4, TINY.n_ctx))
    losses = []
    for model in (plain, converted):
        loss = model(ids, labels=ids, return_logits=False).loss
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=LOSS_RTOL)
    assert losses[1] != losses[0]  # float8 did run
    for (name, p), q in zip(plain.named_parameters(), converted.parameters(), strict=True):
        error = ((q.grad - p.grad).norm() / p.grad.norm()).item()
        assert error < GRAD_REL_L2, f"{name}: gradient off by {error:.3f} (L2, relative)"
