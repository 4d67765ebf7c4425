"""How well a model predicts given text: per-token log-probabilities and perplexity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from genpt.data.documents import iter_documents
from genpt.model import GPT
from genpt.tokenizer import Tokenizer


@torch.no_grad()
def token_logprobs(model: GPT, ids: list[int]) -> list[float]:
    """log p(token_t | tokens before it) for t >= 1, in windows of the model's context.

    Windows after the first keep the previous window's last token as their first, so that every
    token after the first is scored exactly once with as much context as fits a fresh window.
    """
    model.eval()
    device = next(model.parameters()).device
    n_ctx = model.config.n_ctx
    result: list[float] = []
    start = 0
    while start < len(ids) - 1:
        window = torch.tensor([ids[start : start + n_ctx]], device=device)
        logp = model(window).logits[0, :-1].float().log_softmax(dim=-1)
        result.extend(logp.gather(1, window[0, 1:, None])[:, 0].tolist())
        start += n_ctx - 1
    return result


@dataclass
class Perplexity:
    tokens: int  # tokens predicted
    loss: float  # mean negative log-likelihood per token (nats)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


@torch.no_grad()
def perplexity(model: GPT, ids: list[int], batch_size: int = 8) -> Perplexity:
    """Token-level perplexity over non-overlapping windows of n_ctx tokens (the last one may be shorter)."""
    model.eval()
    device = next(model.parameters()).device
    n_ctx = model.config.n_ctx
    windows = [ids[i : i + n_ctx] for i in range(0, len(ids), n_ctx)]
    full = [w for w in windows if len(w) == n_ctx]
    batches = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
    batches += [[w] for w in windows if 2 <= len(w) < n_ctx]  # the shorter last window alone
    total, count = 0.0, 0
    for batch in batches:
        x = torch.tensor(batch, device=device)
        predicted = x.numel() - x.size(0)
        total += model(x, labels=x, return_logits=False).loss.float().item() * predicted
        count += predicted
    if count == 0:
        raise ValueError("the text is too short to score (fewer than two tokens)")
    return Perplexity(tokens=count, loss=total / count)


def perplexity_of_files(model: GPT, tokenizer: Tokenizer, inputs: Sequence[str | Path], *,
                        strip_gutenberg: bool = False, text_field: str = "text") -> Perplexity:
    """`perplexity` over text files' documents, each ended by the end-of-text token as in the shards."""
    ids: list[int] = []
    for doc in iter_documents(inputs, text_field=text_field, strip_gutenberg=strip_gutenberg):
        ids.extend(tokenizer.encode(doc.text))
        if doc.last:  # a long document arrives in several pieces
            ids.append(tokenizer.eot_id)
    return perplexity(model, ids)
