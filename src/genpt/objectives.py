"""The fine-tuning objectives: L2 for each kind of target, and L3 = L2 + lambda * L1."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(target: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L2: cross-entropy over classes or over the answers of a multiple choice; MSE for a score."""
    if target == "score":
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    if target in ("class", "choice"):
        return F.cross_entropy(logits.float(), labels)
    raise ValueError(f"unknown target {target!r}")


def combined_loss(l2: torch.Tensor, l1: torch.Tensor | None, lm_coef: float) -> torch.Tensor:
    """L3 = L2 + lambda * L1 (the paper uses lambda = 0.5); lambda = 0 is fine-tuning without the LM."""
    if l1 is None or lm_coef == 0:
        return l2
    return l2 + lm_coef * l1


def predictions(target: str, logits: torch.Tensor) -> torch.Tensor:
    """Class ids, answer indices or scores from the head's outputs."""
    if target == "score":
        return logits.float().squeeze(-1)
    return logits.argmax(dim=-1)


def probabilities(target: str, logits: torch.Tensor) -> torch.Tensor | None:
    return None if target == "score" else logits.float().softmax(dim=-1)
