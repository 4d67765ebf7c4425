"""What every format conversion shares: the in-memory form `Converted` and its tensor helpers.

Each format module (`genpt.interop.genpt`, `hf`, `openai`) turns its files into a `Converted` and back,
and imports only this module from interop, never another format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genpt.config import ModelConfig
from genpt.errors import GenptError


@dataclass
class Converted:
    """A model on its way between formats, in genpt's names and layouts (`nn.Linear` weights are (out, in))."""

    config: ModelConfig
    state: dict[str, torch.Tensor]  # a genpt GPT's tensors; no tied LM head, no vocabulary padding rows
    tokenizer: Any  # genpt.tokenizer.Tokenizer or genpt.gpt1_tokenizer.GPT1Tokenizer
    task: dict | None = None  # a fine-tuned model's TaskSpec.to_dict()
    head: dict | None = None  # its config.json "head" section: n_out, max_len, clf_pdrop
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)  # "linear.weight", "linear.bias"
    source: str = ""


def append_rows(weight: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """Token embeddings grown to `rows`, the new ones drawn from N(0, 0.02) as GPT-1's fine-tuning code drew
    its special tokens' embeddings."""
    extra = rows - weight.size(0)
    if extra <= 0:
        return weight
    generator = torch.Generator().manual_seed(seed)
    new = torch.randn(extra, weight.size(1), generator=generator) * 0.02
    return torch.cat([weight.float(), new.to(weight.device)])


def unpadded(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state without the embedding's padding rows (ModelConfig.pad_vocab_multiple), which no format
    but genpt's own knows of."""
    return {**state, "tokens_embed.weight": state["tokens_embed.weight"][: config.vocab_size]}


def padded(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state with the zero padding rows a genpt model of `config` has."""
    weight = state["tokens_embed.weight"]
    extra = config.padded_vocab_size - weight.size(0)
    if extra <= 0:
        return state
    return {**state, "tokens_embed.weight": torch.cat([weight, weight.new_zeros(extra, weight.size(1))])}


def cut_positions(state: dict[str, torch.Tensor], config: ModelConfig, n_ctx: int | None, where: Path) -> None:
    """Keep only the first `n_ctx` position embeddings (a shorter context needs no others)."""
    if n_ctx is None:
        return
    if not 0 < n_ctx <= config.n_ctx:
        raise GenptError(f"--n-ctx {n_ctx}: {where} has {config.n_ctx} positions; choose 1 to {config.n_ctx}")
    state["positions_embed.weight"] = state["positions_embed.weight"][:n_ctx].contiguous()
    config.n_ctx = n_ctx


__all__ = ["Converted", "append_rows", "cut_positions", "padded", "unpadded"]
