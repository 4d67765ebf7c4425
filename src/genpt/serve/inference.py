"""What the worker thread runs for one batch: the library's model, scoring and generation.

Classification packs several sequences into each row of one pass (a block-diagonal causal mask, positions
restarting at each sequence) and reads the extract tokens' states through the model's own head; scoring
reuses `genpt.scoring.token_logprobs`; generation reuses `genpt.generate.generate_steps` (left padding,
the key/value cache) and hands each new piece of text to the request as it is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from genpt.data.transforms import EncodedExample
from genpt.evaluation import predict_encoded
from genpt.generate import generate_steps
from genpt.model import GPT
from genpt.objectives import predictions, probabilities
from genpt.scoring import token_logprobs
from genpt.serve.loading import ServedModel

WIDTH_STEP = 16  # tokens a packed row's width is a multiple of; also the rows of an AMX tile


def length_groups(lengths: Sequence[int], waste: float = 1.25) -> list[list[int]]:
    """Indices grouped by length so that padding each group to its longest adds at most `waste` - 1 of its
    tokens: a short text batched with a long one would otherwise cost as much as the long one."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    real = 0
    for i in order:
        if groups and lengths[groups[-1][0]] * (len(groups[-1]) + 1) <= waste * (real + lengths[i]):
            groups[-1].append(i)
            real += lengths[i]
        else:
            groups.append([i])
            real = lengths[i]
    return groups


def padded_width(length: int, n_ctx: int, step: int = WIDTH_STEP) -> int:
    """`length` rounded up to a multiple of `step`, within the context (a longer one is the model's to refuse)."""
    return max(length, min(-(-length // step) * step, n_ctx))


def pack_rows(lengths: Sequence[int], width: int) -> list[tuple[int, int]]:
    """(row, offset) of each sequence, placed longest first into the first row of `width` tokens with room."""
    place: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if free >= lengths[i]), len(room))
        if row == len(room):
            room.append(width)
        place[i] = (row, width - room[row])
        room[row] -= lengths[i]
    return place


def packed_states(gpt: GPT, sequences: Sequence[list[int]], pad_id: int, width: int) -> torch.Tensor:
    """The final state of each sequence's last token (N, n_embd), from one pass over rows of `width` tokens that
    hold several sequences side by side: a block-diagonal causal mask keeps each to its own tokens and its
    positions start at 0, so each state is the one the sequence alone gets (up to the order of float sums)."""
    place = pack_rows([len(s) for s in sequences], width)
    rows = 1 + max(r for r, _ in place)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    segment = torch.full((rows, width), -1, dtype=torch.long)  # the padding is one more segment of its own
    for i, (seq, (r, o)) in enumerate(zip(sequences, place, strict=True)):
        ids[r, o : o + len(seq)] = torch.tensor(seq)
        positions[r, o : o + len(seq)] = torch.arange(len(seq))
        segment[r, o : o + len(seq)] = i
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = (segment[:, :, None] == segment[:, None, :]) & causal
    device = gpt.tokens_embed.weight.device
    h, _ = gpt.hidden(ids.to(device), positions=positions.to(device), attn_mask=mask[:, None].to(device))
    last = torch.tensor([[r, o + len(seq) - 1] for seq, (r, o) in zip(sequences, place, strict=True)], device=device)
    return h[last[:, 0], last[:, 1]]


def classify_batch(served: ServedModel, items: Sequence[EncodedExample]) -> list[tuple[Any, list[float] | None]]:
    """(prediction, probabilities) for each encoded example.

    A GPT reads the batch packed (`packed_states`): one pass whose rows are filled with whole sequences, so
    no token is spent on padding except at the ends of rows, and the row width is rounded up to a multiple
    of WIDTH_STEP so that shapes repeat: oneDNN, which runs bfloat16 products, builds a kernel for each new
    shape (about 3 ms for one linear layer here, more than the product itself). Other backbones (the LSTM),
    which cannot take the mask, get a right-padded pass per group of like lengths."""
    ft = served.finetuned
    model, target = ft.model, ft.task.target
    if not isinstance(model.gpt, GPT):
        return padded_classify(served, items)
    sequences = [s for item in items for s in item.sequences]  # the batcher's key: each item has as many
    # One sequence alone has one shape per length, few enough for oneDNN's cache of kernels: no rounding
    width = padded_width(max(len(s) for s in sequences), served.n_ctx, WIDTH_STEP if len(sequences) > 1 else 1)
    with torch.inference_mode():
        states = packed_states(model.gpt, sequences, ft.tokenizer.pad_id, width)
        logits = model.head_logits(states.view(len(items), len(items[0].sequences), -1))
    predicted = predictions(target, logits).tolist()
    probs = probabilities(target, logits)
    return [(p, probs[i].tolist() if probs is not None else None) for i, p in enumerate(predicted)]


def padded_classify(served: ServedModel, items: Sequence[EncodedExample]) -> list[tuple[Any, list[float] | None]]:
    """`classify_batch` for backbones that read only whole rows: a right-padded pass per group of like lengths."""
    ft = served.finetuned
    results: list[tuple[Any, list[float] | None]] = [(None, None)] * len(items)
    for group in length_groups([max(len(s) for s in item.sequences) for item in items]):
        chunk = [items[i] for i in group]
        predicted, probs = predict_encoded(ft.model, chunk, ft.task.target, ft.tokenizer.pad_id, len(chunk))
        for k, i in enumerate(group):
            results[i] = (predicted[k], probs[k] if probs is not None else None)
    return results


def score_batch(served: ServedModel, items: Sequence[list[int]]) -> list[list[float]]:
    """log p(token | tokens before it) for every token after the first of each text."""
    return [token_logprobs(served.lm, ids) for ids in items]


@dataclass
class Generation:
    """One completion request: its prompt, how to sample, and where its events go (called from the worker)."""

    prompt: list[int]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    logprobs: int | None
    seed: int | None
    emit: Callable[[tuple], None]
    cancelled: bool = False  # set by the request when its client left or its time ran out


@dataclass
class _Row:
    """The text of one sample so far, holding back what may still become a stop sequence or a whole character."""

    stop: list[str]
    ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the text already emitted
    finish: str | None = None

    def push(self, token: int, tokenizer, eot_id: int, limit: int) -> str:
        """The text that `token` makes safe to emit; sets `finish` when the row ends."""
        if token == eot_id:
            self.finish = "stop"
            text = tokenizer.decode(self.ids)
            return text[self.sent:]
        self.ids.append(token)
        text = tokenizer.decode(self.ids)
        hits = [i for i in (text.find(s, max(0, self.sent - len(s) + 1)) for s in self.stop) if i >= 0]
        if hits:
            self.finish = "stop"
            cut = min(hits)
            out, self.sent = text[self.sent:cut], cut
            return out
        if len(self.ids) >= limit:
            self.finish = "length"
            out, self.sent = text[self.sent:], len(text)
            return out
        safe = len(text.rstrip("\ufffd"))  # a character whose bytes are not all out yet
        held = max((k for s in self.stop for k in range(1, len(s)) if text[:safe].endswith(s[:k])), default=0)
        safe = max(self.sent, safe - held)
        out, self.sent = text[self.sent:safe], safe
        return out


def _token_logprobs(tokenizer, logp: torch.Tensor, token: int, top: int) -> dict[str, Any]:
    info: dict[str, Any] = {"token": tokenizer.decode([token]), "logprob": float(logp[token])}
    if top:
        values, ids = logp.topk(top)
        info["top"] = {tokenizer.decode([i]): float(v) for v, i in zip(values.tolist(), ids.tolist(), strict=True)}
    return info


def generate_batch(served: ServedModel, items: Sequence[Generation]) -> list[None]:
    """Sample every row of every request together; events: ("text", choice, text, logprobs) as tokens come,
    then ("end", choice, finish_reason, completion_tokens) once per row."""
    model, tokenizer = served.lm, served.tokenizer
    rows = [(item, j) for item in items for j in range(item.n)]
    states = [_Row(item.stop) for item, _ in rows]
    first = items[0]  # the batcher groups requests with the same temperature, top_p and seed
    generator = None
    if first.seed is not None:
        generator = torch.Generator(model.tokens_embed.weight.device).manual_seed(first.seed)
    steps = max(item.max_tokens for item in items)
    want_logprobs = any(item.logprobs is not None for item in items)

    def end(r: int) -> None:
        item, j = rows[r]
        item.emit(("end", j, states[r].finish, len(states[r].ids)))

    for r, (item, _) in enumerate(rows):
        if item.max_tokens == 0:
            states[r].finish = "length"
            end(r)
    if steps > 0:
        for token, logits in generate_steps(model, [item.prompt for item, _ in rows], steps,
                                            temperature=first.temperature, top_p=first.top_p, generator=generator):
            logp = logits.log_softmax(dim=-1) if want_logprobs else None
            for r, ((item, j), state) in enumerate(zip(rows, states, strict=True)):
                if state.finish is not None:
                    continue
                if item.cancelled:
                    state.finish = "cancelled"
                    continue
                tok = int(token[r])
                text = state.push(tok, tokenizer, tokenizer.eot_id, item.max_tokens)
                info = _token_logprobs(tokenizer, logp[r], tok, item.logprobs) if item.logprobs is not None else None
                if text or info:
                    item.emit(("text", j, text, info))
                if state.finish is not None:
                    end(r)
            if all(state.finish is not None for state in states):
                break
    return [None] * len(items)
