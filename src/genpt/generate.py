"""Sampling from a language model with the key/value cache: temperature, top-k and nucleus (top-p)."""

from __future__ import annotations

import torch

from genpt.model import GPT


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top k and outside the smallest set with mass >= top_p."""
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass before it already reaches top_p (the top token always stays).
        drop = probs.cumsum(dim=-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def generate(
    model: GPT,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Extend each row of `input_ids` (B, T) by up to `max_new_tokens`; temperature 0 is greedy.

    Past the context length the window slides: the cache is rebuilt from the last n_ctx - 1 tokens.
    """
    if input_ids.size(1) == 0:
        raise ValueError("the prompt must hold at least one token")
    model.eval()
    n_ctx = model.config.n_ctx
    ids = input_ids
    cache = None
    new = ids[:, -n_ctx:]
    finished = torch.zeros(ids.size(0), dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        if cache is not None and cache[0][0].size(2) + new.size(1) > n_ctx:
            cache, new = None, ids[:, -(n_ctx - 1):]
        out = model(new, cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[:, -1, :].float()
        if temperature <= 0:
            token = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = filter_logits(logits / temperature, top_k, top_p)
            token = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
        if eos_id is not None:
            token = token.masked_fill(finished[:, None], eos_id)
            finished |= token[:, 0] == eos_id
        ids = torch.cat([ids, token], dim=1)
        new = token
        if eos_id is not None and bool(finished.all()):
            break
    return ids
