"""liger-kernel's Triton kernels in GPT-1's training step on CUDA (`train.kernels=liger`).

Two of liger's kernels fit GPT-1's post-LN block and tied head:
- the fused linear + cross-entropy: the LM loss through the tied head, row chunk by row chunk, so the
  (tokens, vocab) logits are never held at once, with the gradients computed in the same pass;
- LayerNorm: a row kernel with a fused backward, in place of every `nn.LayerNorm` (the same
  parameters, so the same state dict and optimizer groups).
liger's GELU kernels are gated (GEGLU, SwiGLU): none fits GPT-1's plain tanh-GELU MLP, which stays with
torch (Inductor fuses it with the bias add). A padded vocabulary's rows (model.pad_vocab_multiple)
keep the product's rounded shape and get a bias of -inf, so they never enter the softmax and get no
gradient: the loss is the unpadded model's.

The loss runs outside torch.compile's graph (`torch.compiler.disable`): it reads the count of scored
targets on the host, which a graph cannot. The layer norms call liger's Triton autograd function
directly, which Dynamo can trace into the compiled graph: liger's own `LigerLayerNorm` goes through
its backend dispatcher, which is `torch.compiler.disable`d and would break the graph at each of the
24 norms.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch
from torch import nn

log = logging.getLogger("genpt")
IGNORE_INDEX = -100


def missing(device: torch.device) -> str | None:
    """Why liger cannot run here, or None. TRITON_INTERPRET=1 (Triton's CPU interpreter) is for tests."""
    if importlib.util.find_spec("liger_kernel") is None or importlib.util.find_spec("triton") is None:
        return "liger-kernel (and Triton) are not installed: pip install 'genpt[gpu]'"
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"liger's Triton kernels need a CUDA device, not {device.type}"
    return None


@torch.compiler.disable
def lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """Mean cross-entropy of `h @ weight.T` over the first `vocab` rows (IGNORE_INDEX skipped), by liger."""
    from liger_kernel.ops import LigerFusedLinearCrossEntropyFunction

    bias = None
    if weight.size(0) > vocab:
        bias = torch.zeros(weight.size(0), dtype=weight.dtype, device=weight.device)
        bias[vocab:] = float("-inf")
    h = h.reshape(-1, h.size(-1))
    if torch.is_autocast_enabled(h.device.type):  # liger casts nothing itself: its products follow autocast
        dtype = torch.get_autocast_dtype(h.device.type)
        bias = bias.to(dtype) if bias is not None else None
    return LigerFusedLinearCrossEntropyFunction.apply(h, weight, targets.reshape(-1), bias, None, IGNORE_INDEX)[0]


class LayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` (same parameters, same state dict) computed by liger's Triton kernels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from liger_kernel.ops import LigerLayerNormFunction

        return LigerLayerNormFunction.apply(x, self.weight, self.bias, self.eps)


def layer_norm(module: nn.LayerNorm) -> LayerNorm:
    """liger's LayerNorm holding `module`'s own weight and bias."""
    fused = LayerNorm(module.normalized_shape, eps=module.eps, device="meta")
    fused.weight, fused.bias = module.weight, module.bias
    return fused


def apply(model: nn.Module, head_weight: torch.Tensor | None) -> int:
    """Put liger's LayerNorm in place of each affine 1-D `nn.LayerNorm` of `model`, and its fused loss
    on `head_weight` (the tied LM head: genpt's LM loss asks the weight for a backend). Returns the
    number of layer norms replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is nn.LayerNorm and len(child.normalized_shape) == 1
                    and child.weight is not None and child.bias is not None):
                setattr(parent, name, layer_norm(child))
                replaced += 1
    if head_weight is not None:
        head_weight.genpt_lm_loss = lm_loss
    return replaced


__all__ = ["LayerNorm", "apply", "layer_norm", "lm_loss", "missing"]
