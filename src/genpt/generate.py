"""Sampling from a language model with the key/value cache: temperature, top-k and nucleus (top-p).

Prompts of different lengths share a batch by left padding, so that every row ends at the same column
and one new column per step extends them all. Attention never sees the padding and each row's positions
count from its own first token, so a row generates what it would alone (exactly so when greedy).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from genpt.errors import GenptError
from genpt.model import GPT, KVCache

Prompts = torch.Tensor | Sequence[Sequence[int] | torch.Tensor]
MAX_ROWS = 4096  # prompts x samples in one batch: beyond this a request is a mistake, not a workload


def check_sampling(*, max_new_tokens: int, temperature: float, top_k: int, top_p: float, rows: int = 1) -> None:
    """Refuse sampling settings that would fail, hang or silently mean something else, naming the flag."""
    if max_new_tokens < 0:
        raise GenptError(f"--max-new-tokens must be 0 or more, got {max_new_tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        raise GenptError(f"--temperature must be a finite number >= 0 (0: greedy), got {temperature}")
    if top_k < 0:
        raise GenptError(f"--top-k must be 0 (off) or more, got {top_k}")
    if not 0 < top_p <= 1:  # NaN fails this too
        raise GenptError(f"--top-p must be in (0, 1], got {top_p}")
    if not 1 <= rows <= MAX_ROWS:
        raise GenptError(f"--num-samples: {rows} sequences in one batch; expected 1 to {MAX_ROWS} "
                         "(prompts x samples)")


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
def generate_steps(
    model: GPT,
    prompts: Prompts,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield each step's new tokens (B,) and the unfiltered logits (B, vocab) they were drawn from.

    Tokens come as they are made (a server streams them); the caller stops early by leaving the loop.
    Past the context length the window slides: each step then reads the last n_ctx tokens afresh,
    because the window's learned positions have all moved.
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
    cache: KVCache | None = None
    for end in range(width, width + max_new_tokens):  # end: columns filled so far
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
            filtered = filter_logits(logits / temperature, top_k, top_p)
            token = torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator)[:, 0]
        tokens[:, end] = token
        yield token, logits


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
    ending at its first generated `eos_id`.
    """
    device = model.tokens_embed.weight.device
    rows = prompts.size(0) if isinstance(prompts, torch.Tensor) and prompts.dim() == 2 else len(prompts)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    for token, _ in generate_steps(model, prompts, max_new_tokens, temperature=temperature, top_k=top_k,
                                   top_p=top_p, generator=generator):
        if eos_id is not None:
            token = token.masked_fill(finished, eos_id)
            finished |= token == eos_id
        new.append(token)
        if eos_id is not None and bool(finished.all()):
            break
    made = torch.stack(new, dim=1) if new else torch.zeros(rows, 0, dtype=torch.long, device=device)
    if isinstance(prompts, torch.Tensor):
        return torch.cat([prompts.to(device), made], dim=1)
    out = []
    for prompt, ids in zip(prompts, made.tolist(), strict=True):
        if eos_id is not None and eos_id in ids:
            ids = ids[:ids.index(eos_id) + 1]
        out.append(torch.as_tensor(prompt, dtype=torch.long).view(-1).tolist() + ids)
    return out
