"""The one place the model asks for its fast paths: linear, dropout, attention, GELU, the LM loss.

Each is a `FastPath` of named alternatives (genpt.kernels.registry): the CPU kernels first, each
applying only to the inputs it serves, and the plain PyTorch twin last, which serves the rest (GPUs,
torch.compile, other dtypes). Of those that apply, the one measured fastest on this CPU runs
(genpt.kernels.select). The model calls `linear`, `dropout`, `attention`, `gelu` and `lm_loss` and does not
know which alternative ran; `disable("linear.onednn", ...)` switches alternatives off
for a block (the parity tests and bench/cpu_ablation.py). What each gains: docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from genpt.kernels import causal_attention as _attention
from genpt.kernels import chunked_loss as _lm_loss
from genpt.kernels import dropout_masks as _dropout
from genpt.kernels import fused_gelu as _gelu
from genpt.kernels import onednn
from genpt.kernels.chunked_loss import cross_entropy
from genpt.kernels.registry import Alternative, FastPath
from genpt.kernels.registry import disabled as _disabled
from genpt.kernels.sdpa_priority import preferred_attention_kernels

_linear = FastPath(
    "linear",
    Alternative("onednn", onednn.applies, onednn.onednn_linear),
    Alternative("onednn_direct", onednn.direct_applies, onednn.onednn_linear_direct),
    Alternative("plain", lambda *args, **kwargs: True, F.linear),
)
_drop = FastPath(
    "dropout",
    Alternative("lanes", _dropout.applies, _dropout.lane_dropout),
    Alternative("plain", lambda *args, **kwargs: True, F.dropout),
)
_attend = FastPath(
    "attention",
    Alternative("cpu_dropout", _attention.cpu_dropout_applies, _attention.causal_attention_with_dropout),
    Alternative("cpu_math", _attention.cpu_math_applies, _attention.causal_attention_math),
    Alternative("sdpa", lambda *args, **kwargs: True, _attention.sdpa_attention),
)


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


_activate = FastPath(
    "gelu",
    Alternative("fused", _gelu.applies, _gelu.fused_gelu),
    Alternative("plain", lambda *args, **kwargs: True, _tanh_gelu),
)


def _plain_lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """The whole (positions, vocab) logits through the head, then the cross-entropy."""
    return cross_entropy(linear(h, weight), targets, vocab)


_loss = FastPath(
    "lm_loss",
    Alternative("chunked_fused", _lm_loss.fused_applies, _lm_loss.chunked_fused_lm_loss),
    Alternative("chunked", _lm_loss.applies, _lm_loss.chunked_lm_loss),
    Alternative("chunked_mm", _lm_loss.mm_applies, _lm_loss.chunked_mm_lm_loss),
    Alternative("plain", lambda *args, **kwargs: True, _plain_lm_loss),
)
PATHS: dict[str, FastPath] = {path.name: path for path in (_linear, _drop, _attend, _activate, _loss)}


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`."""
    return _linear(x, weight, bias)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`; the identity when not training or p is 0."""
    if not training or p == 0.0:
        return x
    return _drop(x, p, True)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
              attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention of the last q.size(2) positions over all keys (genpt.kernels.causal_attention)."""
    return _attend(q, k, v, dropout_p, attn_mask)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-1's GELU, the tanh approximation: `F.gelu(x, approximate="tanh")`."""
    return _activate(x)


def lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of `h @ weight.T` (rows of h: positions) against `targets` (IGNORE_INDEX skipped).

    Rows of `weight` from `vocab` on are padding (ModelConfig.pad_vocab_multiple): they take part in the
    product, whose shape they are there to round, but never in the softmax.
    """
    vocab = vocab or weight.size(0)
    backend = getattr(weight, "genpt_lm_loss", None)  # set on a tied head by genpt.kernels.backends (liger)
    if backend is not None:
        return backend(h, weight, targets, vocab)
    return _loss(h, weight, targets, vocab)


@contextmanager
def disable(*names: str) -> Iterator[None]:
    """Within the block, skip the named alternatives (`"linear.onednn"`) or a path's fast ones (`"dropout"`)."""
    with _disabled(PATHS, *names):
        yield


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) whose product goes through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class Dropout(nn.Dropout):
    """`nn.Dropout` through `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


__all__ = ["PATHS", "Dropout", "Linear", "attention", "cross_entropy", "disable", "dropout", "gelu", "linear",
           "lm_loss", "preferred_attention_kernels"]
