"""Which fused kernel `scaled_dot_product_attention` tries first (`train.attention_kernel`).

PyTorch tries FlashAttention, then the memory-efficient kernel, then the plain math path, and cuDNN's
fused attention last, so it never reaches cuDNN while the math path is there. On Hopper GPUs
(H100/H200) cuDNN's kernels were measured 1.7-2.3x faster than FlashAttention at training shapes
(transformers PR #48163, which prefers them there for the same reason), and slower on Ampere and
Blackwell; so "auto" asks for cuDNN first on compute capability 9.x only. Every choice is a
preference, not a restriction: a shape or setting the first kernel cannot serve falls back to the
next, and all of them compute the same attention. The CPU picks its kernel in a fixed order (flash,
then math) whatever the priorities say, so there this changes nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from genpt.config import ATTENTION_KERNELS

KERNELS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
# The fall-back order after the preferred kernel: torch's own, with cuDNN before the math path so that
# it is still reachable.
_FALLBACK = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
             SDPBackend.MATH)


def kernel_order(choice: str, device_type: str, capability: tuple[int, int] | None) -> list[SDPBackend] | None:
    """The priority order for `choice` on this device; None keeps torch's own order.

    `capability` is the CUDA compute capability (None off CUDA): "auto" prefers cuDNN on 9.x only.
    """
    if choice not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel must be one of {', '.join(ATTENTION_KERNELS)}, got {choice!r}")
    if choice == "torch" or (choice == "auto" and (device_type != "cuda" or capability is None
                                                    or capability[0] != 9)):
        return None
    first = KERNELS["cudnn" if choice == "auto" else choice]
    return [first, *(k for k in _FALLBACK if k != first)]


def preferred_attention_kernels(choice: str, device: torch.device) -> AbstractContextManager:
    """A context in which scaled dot-product attention tries the kernels in `choice`'s order.

    Wrap the whole run, not a step: under `torch.compile` the kernel is picked when the graph is traced.
    """
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    order = kernel_order(choice, device.type, capability)
    return nullcontext() if order is None else sdpa_kernel(order, set_priority=True)
