"""Causal self-attention over a key/value cache: SDPA (the plain twin), and the CPU's explicit paths.

PyTorch's CPU SDPA kernel drops no attention weights, and its backward is slow in bf16 (at the cpu
recipe's shape, 45 ms against 11 for the same math as products and a softmax, Xeon model 207), so
training on the CPU has two explicit alternatives, each measured against SDPA per shape: with dropout
and without.

Queries are the last `T` positions of the keys: with a cache (`past` = keys - queries), query i sees
every cached key and the new keys up to itself. An explicit `attn_mask` (B, 1, T, keys), True where a
query may attend, replaces the causal mask (genpt.generate's left-padded batches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genpt.kernels.dropout_masks import apply_mask, keep_mask


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                   attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`F.scaled_dot_product_attention` with the causal mask the cache calls for."""
    T, past = q.size(2), k.size(2) - q.size(2)
    if attn_mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if T == 1:  # one new token sees every key: no mask to build, each step of generation
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    mask = torch.ones(T, k.size(2), dtype=torch.bool, device=q.device).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def cpu_dropout_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                        attn_mask: torch.Tensor | None = None) -> bool:
    """Training on the CPU without a cache: no fused CPU kernel drops attention weights."""
    return (dropout_p > 0 and attn_mask is None and k.size(2) == q.size(2) and q.device.type == "cpu"
            and not torch.compiler.is_compiling())


def cpu_math_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                     attn_mask: torch.Tensor | None = None) -> bool:
    """Training on the CPU without a cache or dropout: only backward passes gain, so only gradients ask."""
    return (dropout_p == 0 and attn_mask is None and k.size(2) == q.size(2) and q.device.type == "cpu"
            and q.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling())


def _causal_weights(q3: torch.Tensor, k3: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) over the keys up to each query: the causal mask and the scale in one baddbmm."""
    T, d = q3.size(1), q3.size(2)
    future = torch.full((T, T), float("-inf"), dtype=q3.dtype, device=q3.device).triu_(1)
    return torch.baddbmm(future, q3, k3.transpose(1, 2), alpha=d**-0.5).softmax(dim=-1)


def causal_attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                          attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA's causal attention as two batched products and a softmax (cpu_math_applies)."""
    B, H, T, d = q.shape
    q3, k3, v3 = (t.reshape(B * H, T, d) for t in (q, k, v))
    return torch.bmm(_causal_weights(q3, k3), v3).view(B, H, T, d)


def causal_attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                                  attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA's math path for dropped attention weights, cheaper: genpt's dropout masks, the causal mask and
    1/sqrt(d) folded into one baddbmm, and the dropout's 1/(1-p) applied to the (T, d) output instead of
    the (T, T) weights. Needs no cache and no `attn_mask` (cpu_dropout_applies)."""
    B, H, T, d = q.shape
    q3, k3, v3 = (t.reshape(B * H, T, d) for t in (q, k, v))
    weights = _causal_weights(q3, k3)
    keep, scale = keep_mask(weights.shape, dropout_p)
    return torch.bmm(apply_mask(weights, keep), v3).mul_(scale).view(B, H, T, d)


__all__ = ["causal_attention_math", "causal_attention_with_dropout", "cpu_dropout_applies", "cpu_math_applies",
           "sdpa_attention"]
