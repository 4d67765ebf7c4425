"""The training-time backends a run asks for (`train.kernels`, `train.float8`), applied to a model
before it is wrapped and compiled. Each is a no-op, with one logged line saying why, where its
library or hardware is missing, so a recipe written for a GPU still runs elsewhere."""

from __future__ import annotations

import logging

import torch
from torch import nn

from genpt.kernels import float8, liger

log = logging.getLogger("genpt")


def tied_head_weight(model: nn.Module) -> torch.Tensor | None:
    """The LM head's weight when it is an embedding's (GPT-1's tied head), else None."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m.weight) in embeddings:
            return m.weight
    return None


def apply_backends(model: nn.Module, kernels: str, use_float8: bool, device: torch.device) -> list[str]:
    """Apply what is asked and available to `model` (on `device`) in place; return what was applied."""
    applied = []
    if kernels == "liger":
        why = liger.missing(device)
        if why:
            log.warning("train.kernels=liger ignored: %s; training with torch's kernels", why)
        else:
            n = liger.apply(model, tied_head_weight(model))
            applied.append(f"liger ({n} layer norms, fused linear + cross-entropy loss)")
    if use_float8:
        why = float8.missing(device)
        if why:
            log.warning("train.float8 ignored: %s; training in the run's train.dtype", why)
        else:
            names = float8.apply(model)
            applied.append(f"float8 ({len(names)} linear layers)")
    if applied:
        log.info("backends: %s", "; ".join(applied))
    return applied


__all__ = ["apply_backends", "tied_head_weight"]
