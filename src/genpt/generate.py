"""Sampling from a language model with the key/value cache: temperature, top-k and nucleus (top-p).

Prompts of different lengths share a batch by left padding, so that every row ends at the same column
and one new column per step extends them all. Attention never sees the padding and each row's positions
count from its own first token, so a row generates what it would alone (exactly so when greedy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genpt.model import GPT, KVCache

Prompts = torch.Tensor | Sequence[Sequence[int] | torch.Tensor]


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


def _left_pad(prompts: Prompts, total: int, device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """A (B, total) id buffer holding the prompts right-aligned at column max(len), and each row's padding."""
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2:
            raise ValueError(f"a prompt tensor must be (batch, tokens), got shape {tuple(prompts.shape)}; "
                             "pass prompts of different lengths as a list")
        lengths = [prompts.size(1)] * prompts.size(0)
    else:
        prompts = [torch.as_tensor(p, dtype=torch.long).view(-1) for p in prompts]
        lengths = [p.numel() for p in prompts]
    if not lengths:
        raise ValueError("no prompts to extend: pass at least one")
    if min(lengths) == 0:
        raise ValueError(f"prompt {lengths.index(0)} is empty: a prompt must hold at least one token")
    width = max(lengths)
    # Under the padding any id will do: attention never reads it.
    tokens = torch.zeros(len(lengths), width + total, dtype=torch.long, device=device)
    if isinstance(prompts, torch.Tensor):
        tokens[:, :width] = prompts
    else:
        for row, p in enumerate(prompts):
            tokens[row, width - p.numel():width] = p
    return tokens, [width - n for n in lengths]


def _read_window(
    model: GPT, tokens: torch.Tensor, valid: torch.Tensor | None, lo: int, hi: int
) -> tuple[torch.Tensor, KVCache]:
    """Run columns lo:hi through the model from scratch; `valid` (B, lo:hi) is False on padding, if any."""
    ids = tokens[:, lo:hi]
    if valid is None:
        return model.hidden(ids)
    positions = (valid.cumsum(dim=-1) - 1).clamp(min=0)
    causal = torch.ones(hi - lo, hi - lo, dtype=torch.bool, device=ids.device).tril()
    # A padding query may look at the padding before it: a query that sees nothing would give NaN,
    # and a NaN value vector poisons every query that masks it out (0 x NaN).
    mask = causal & (valid[:, None, :] | ~valid[:, :, None])
    return model.hidden(ids, positions=positions, attn_mask=mask[:, None])


@torch.inference_mode()
def generate(
    model: GPT,
    prompts: Prompts,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor | list[list[int]]:
    """Extend each prompt by up to `max_new_tokens`; temperature 0 is greedy.

    A (B, T) tensor of prompts comes back as a (B, T + n) tensor, rows that met `eos_id` filled with it.
    A list of prompts of any lengths (lists of ids or 1-D tensors) comes back as lists of ids, each
    ending at its first generated `eos_id`. Past the context length the window slides: each step then
    reads the last n_ctx tokens afresh, because the window's learned positions have all moved.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens is {max_new_tokens}; it must be 0 or more")
    model.eval()
    n_ctx = model.config.n_ctx
    device = model.tokens_embed.weight.device
    tokens, pads = _left_pad(prompts, max_new_tokens, device)
    width = tokens.size(1) - max_new_tokens
    pad = valid = None
    if max(pads) > 0:
        pad = torch.tensor(pads, device=device)[:, None]
        valid = torch.arange(tokens.size(1), device=device) >= pad  # (B, columns), False on padding
    finished = torch.zeros(tokens.size(0), dtype=torch.bool, device=device)
    cache: KVCache | None = None
    end = width  # columns filled so far
    for _ in range(max_new_tokens):
        if cache is None or end > n_ctx:
            lo = max(0, end - n_ctx)
            h, cache = _read_window(model, tokens, valid[:, lo:end] if max(pads) > lo else None, lo, end)
        elif valid is not None:
            h, cache = model.hidden(tokens[:, end - 1:end], cache, positions=end - 1 - pad,
                                    attn_mask=valid[:, None, None, :end])
        else:
            h, cache = model.hidden(tokens[:, end - 1:end], cache)
        logits = model.logits(h[:, -1]).float()
        if temperature <= 0:
            token = logits.argmax(dim=-1)
        else:
            logits = filter_logits(logits / temperature, top_k, top_p)
            token = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]
        if eos_id is not None:
            token = token.masked_fill(finished, eos_id)
            finished |= token == eos_id
        tokens[:, end] = token
        end += 1
        if eos_id is not None and bool(finished.all()):
            break
    if isinstance(prompts, torch.Tensor):
        return tokens[:, :end]
    rows = []
    for row, skip in enumerate(pads):
        ids = tokens[row, skip:end].tolist()
        if eos_id is not None and eos_id in ids[width - skip:]:
            ids = ids[:ids.index(eos_id, width - skip) + 1]
        rows.append(ids)
    return rows
