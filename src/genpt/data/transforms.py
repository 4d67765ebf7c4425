"""The paper's task input transformations (Figure 1): labeled examples -> token sequences.

classification   [start] text [extract]
entailment       [start] premise [delim] hypothesis [extract]
similarity       [start] A [delim] B [extract]  and  [start] B [delim] A [extract]
multiple choice  [start] context [delim] answer_k [extract]   for each answer k

Truncation keeps the special tokens and shares the budget fairly between two segments: the shorter
segment keeps all its tokens if it fits in half the budget, and the longer one gets the rest; if both
are longer than half, each keeps its first half. Sequences are right-padded with the pad token, which
the causal mask keeps out of every real position's attention and the LM labels mark as ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from genpt.data.tasks import Example, TaskSpec
from genpt.labels import IGNORE_INDEX
from genpt.tokenizer import Tokenizer


@dataclass
class EncodedExample:
    sequences: list[list[int]]  # one for classification/entailment, two for similarity, k for choices
    label: int | float | None
    truncated: bool


def fit_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut two segments to at most `budget` tokens together, fairly (see the module docstring)."""
    if len(a) + len(b) <= budget:
        return a, b
    half = budget // 2
    if len(a) <= half:
        return a, b[: budget - len(a)]
    if len(b) <= half:
        return a[: budget - len(b)], b
    return a[:half], b[: budget - half]


def encode_example(spec: TaskSpec, example: Example, tokenizer: Tokenizer, n_ctx: int) -> EncodedExample:
    start, delim, extract = tokenizer.start_id, tokenizer.delimiter_id, tokenizer.extract_id
    parts = [tokenizer.encode(text) for text in example.texts]
    if spec.transform == "classification":
        (text,) = parts
        kept = text[: n_ctx - 2]
        return EncodedExample([[start, *kept, extract]], example.label, len(kept) < len(text))

    def pair(a: list[int], b: list[int]) -> tuple[list[int], bool]:
        ca, cb = fit_pair(a, b, n_ctx - 3)
        return [start, *ca, delim, *cb, extract], len(ca) + len(cb) < len(a) + len(b)

    if spec.transform == "entailment":
        seq, cut = pair(*parts)
        return EncodedExample([seq], example.label, cut)
    if spec.transform == "similarity":
        (ab, cut), (ba, _) = pair(parts[0], parts[1]), pair(parts[1], parts[0])
        return EncodedExample([ab, ba], example.label, cut)
    if spec.transform == "multiple_choice":
        context, answers = parts[0], parts[1:]
        encoded = [pair(context, answer) for answer in answers]
        return EncodedExample([s for s, _ in encoded], example.label, any(c for _, c in encoded))
    raise ValueError(f"unknown transform {spec.transform!r}")


def encode_examples(
    spec: TaskSpec, examples: Sequence[Example], tokenizer: Tokenizer, n_ctx: int
) -> tuple[list[EncodedExample], int]:
    """Encode every example; also return how many had to be truncated."""
    encoded = [encode_example(spec, e, tokenizer, n_ctx) for e in examples]
    return encoded, sum(e.truncated for e in encoded)


def collate(batch: Sequence[EncodedExample], pad_id: int, target: str) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence.

    input_ids (B, S, T), extract_index (B, S) the position of each extract token, lm_labels (B, S, T)
    equal to input_ids with IGNORE_INDEX at padding, and labels (B,) when the examples have them.
    """
    n_seq = len(batch[0].sequences)
    width = max(len(s) for e in batch for s in e.sequences)
    ids = torch.full((len(batch), n_seq, width), pad_id, dtype=torch.long)
    extract = torch.zeros((len(batch), n_seq), dtype=torch.long)
    for i, example in enumerate(batch):
        if len(example.sequences) != n_seq:
            raise ValueError("examples in one batch must have the same number of sequences")
        for j, seq in enumerate(example.sequences):
            ids[i, j, : len(seq)] = torch.tensor(seq)
            extract[i, j] = len(seq) - 1
    positions = torch.arange(width)
    real = positions[None, None, :] <= extract[:, :, None]
    out = {"input_ids": ids, "extract_index": extract, "lm_labels": ids.masked_fill(~real, IGNORE_INDEX)}
    if batch[0].label is not None:
        dtype = torch.float32 if target == "score" else torch.long
        out["labels"] = torch.tensor([e.label for e in batch], dtype=dtype)
    return out
