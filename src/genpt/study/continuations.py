"""A language model's log-probabilities of continuations given contexts: what every zero-shot heuristic reads.

Every text is read after the end-of-text token, which is how pre-training saw a document begin, so its first
token is scored too; a context and its continuation are encoded separately and joined.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch

from genpt.scoring import token_logprobs

# Padded tokens scored in one forward pass of `continuation_logprobs_many`: bounds its logits' memory (tokens x
# vocabulary floats: 256 MB at 16,384 ids) while still filling a GPU with a few dozen sentences at a time.
TOKENS_PER_BATCH = 4096

Pair = tuple[str, str]  # (context, continuation)


class Scored:
    """The continuations each model has already scored, so that heuristics reading the same texts (CoLA's and its
    frequency-corrected variant, the Story Cloze Test's two) run the model once. Kept per model object, and
    forgotten with it: a study's checkpoints are loaded one after another."""

    def __init__(self) -> None:
        self._by_model: weakref.WeakKeyDictionary[torch.nn.Module, dict[Pair, list[float]]] = \
            weakref.WeakKeyDictionary()

    def of(self, model: torch.nn.Module) -> dict[Pair, list[float]]:
        return self._by_model.setdefault(model, {})


def _joined(model, tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """The ids read for `continuation` after end-of-text + `context` (cut from the left to fit), and how many of
    them come before the continuation; no ids for an empty continuation."""
    cont = tokenizer.encode(continuation)
    if not cont:
        return [], 0
    prefix = [tokenizer.eot_id, *tokenizer.encode(context)]
    room = model.config.n_ctx - len(cont)
    if len(prefix) > room:
        prefix = prefix[-max(room, 1):]
    return prefix + cont, len(prefix)


def continuation_logprobs(model, tokenizer, context: str, continuation: str) -> list[float]:
    """log p of each token of `continuation` given end-of-text + `context` (cut from the left to fit)."""
    ids, start = _joined(model, tokenizer, context, continuation)
    return token_logprobs(model, ids)[start - 1 :] if ids else []


@torch.no_grad()
def continuation_logprobs_many(model, tokenizer, pairs: Sequence[Pair], scored: Scored | None = None
                               ) -> list[list[float]]:
    """`continuation_logprobs` of each (context, continuation) pair, many texts to a forward pass; a pair in
    `scored` is not read again (the lists returned are those it holds: read them, do not change them).

    Texts of similar length are batched and padded on the right, which a causal model never reads: each
    text's numbers are those it gets alone, up to float rounding. One at a time, a GPU spends its time
    launching kernels (thousands of sentences at each of a run's checkpoints)."""
    known = scored.of(model) if scored is not None else {}
    new = [pair for pair in dict.fromkeys(pairs) if pair not in known]
    if new:
        model.eval()
        for pair, values in zip(new, _read(model, tokenizer, new), strict=True):
            known[pair] = values
    return [known[pair] for pair in pairs]


def _read(model, tokenizer, pairs: Sequence[Pair]) -> list[list[float]]:
    device = next(model.parameters()).device
    joined = [_joined(model, tokenizer, context, continuation) for context, continuation in pairs]
    out: list[list[float]] = [[] for _ in pairs]
    fits = sorted((i for i, (ids, _) in enumerate(joined) if 2 <= len(ids) <= model.config.n_ctx),
                  key=lambda i: len(joined[i][0]))
    for i, (ids, start) in enumerate(joined):  # longer than the context: read in windows, alone
        if len(ids) > model.config.n_ctx:
            out[i] = token_logprobs(model, ids)[start - 1 :]
    batch: list[int] = []
    for n, i in enumerate(fits):
        batch.append(i)
        following = fits[n + 1] if n + 1 < len(fits) else None
        if following is None or (len(batch) + 1) * len(joined[following][0]) > TOKENS_PER_BATCH:
            _score_batch(model, [joined[j] for j in batch], device, tokenizer.eot_id, [out[j] for j in batch])
            batch = []
    return out


def _score_batch(model, joined: Sequence[tuple[list[int], int]], device, pad: int, into: list[list[float]]) -> None:
    width = max(len(ids) for ids, _ in joined)
    x = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in joined], device=device)
    logits = model(x).logits[:, :-1].float()
    logp = logits.gather(-1, x[:, 1:, None])[..., 0] - logits.logsumexp(dim=-1)
    for row, (ids, start), values in zip(logp.tolist(), joined, into, strict=True):
        values.extend(row[start - 1 : len(ids) - 1])


__all__ = ["TOKENS_PER_BATCH", "Scored", "continuation_logprobs", "continuation_logprobs_many"]
