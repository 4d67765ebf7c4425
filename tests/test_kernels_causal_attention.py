"""genpt.kernels.causal_attention: the CPU path with dropout computes SDPA's math with the same mask; the one
`kernels.attention` call gives SDPA's causal attention over a cache, with or without a mask, whichever
alternative runs; and the model's loss and gradients are the same with every fast path switched off."""

import math

import pytest
import torch
import torch.nn.functional as F

from genpt import kernels
from genpt.config import ModelConfig
from genpt.kernels.causal_attention import causal_attention_math, causal_attention_with_dropout
from genpt.kernels.dropout_masks import keep_mask
from genpt.model import GPT


def test_attention_with_dropout_is_sdpa_math_with_the_same_mask():
    B, H, T, d, p = 2, 3, 12, 8, 0.3
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, T, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    torch.manual_seed(7)
    y = causal_attention_with_dropout(q, k, v, p)
    torch.manual_seed(7)
    keep, scale = keep_mask(torch.Size([B * H, T, T]), p)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~causal, float("-inf")).softmax(-1)
    ref = (weights * keep.view(B, H, T, T) * scale) @ v
    torch.testing.assert_close(y, ref)
    grad = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad), strict=True):
        torch.testing.assert_close(a, b)


def test_attention_as_products_is_sdpa_with_its_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 11, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    y = causal_attention_math(q, k, v)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(y, ref)
    grad = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad), strict=True):
        torch.testing.assert_close(a, b)


def test_attention_without_dropping_equals_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 4) for _ in range(3))
    torch.testing.assert_close(causal_attention_with_dropout(q, k, v, 1e-9),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("past", [0, 1, 5])
@pytest.mark.parametrize("T", [1, 4])
def test_attention_over_a_cache_is_causal_from_the_last_query(past, T):
    torch.manual_seed(0)
    q = torch.randn(2, 3, T, 8, dtype=torch.float64)
    k, v = (torch.randn(2, 3, past + T, 8, dtype=torch.float64) for _ in range(2))
    sees = torch.ones(T, past + T, dtype=torch.bool).tril(diagonal=past)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~sees, float("-inf")).softmax(-1)
    torch.testing.assert_close(kernels.attention(q, k, v), weights @ v)


def test_an_explicit_mask_replaces_the_causal_one():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, 4) for _ in range(3))
    mask = torch.tensor([[False, True, True]]).expand(3, 3)[None, None]
    torch.testing.assert_close(kernels.attention(q, k, v, 0.0, mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_training_on_the_cpu_takes_an_explicit_path_and_inference_or_a_cache_takes_sdpa():
    q = torch.randn(1, 2, 4, 8)
    attention = kernels.PATHS["attention"]
    assert attention.choose(q, q, q, 0.1, None).name == "cpu_dropout"
    assert attention.choose(q, q, q, 0.0, None).name == "sdpa"  # no gradients: SDPA's forward is the faster
    trained = q.clone().requires_grad_()
    assert attention.choose(trained, trained, trained, 0.0, None).name == "cpu_math"
    with torch.no_grad():
        assert attention.choose(trained, trained, trained, 0.0, None).name == "sdpa"
    assert attention.choose(q, torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8), 0.1, None).name == "sdpa"


def test_the_model_gives_the_same_loss_and_gradients_with_every_fast_path_off():
    config = ModelConfig(vocab_size=2000, n_ctx=64, n_embd=32, n_layer=2, n_head=2, attn_pdrop=0.0,
                         embd_pdrop=0.0, resid_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT(config)
    ids = torch.randint(0, config.vocab_size, (8, 64))

    def loss_and_grads():
        model.zero_grad()
        loss = model(ids, labels=ids, return_logits=False).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    fast = loss_and_grads()
    with kernels.disable(*kernels.PATHS):
        plain = loss_and_grads()
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(fast[1], plain[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
