"""Which fused kernel `scaled_dot_product_attention` tries first (`train.attention_kernel`).

PyTorch picks the kernel itself ("torch", the default): FlashAttention first on most GPUs, and since
2.10 cuDNN's fused attention first on Hopper and Blackwell when the bundled cuDNN is recent enough
(>= 9.15, the first free of the 2.5-era bugs that made it opt-in). Naming a kernel overrides that
for a run: to compare kernels on one machine (`bench/gpu.sh` does), to work around a kernel bug, or
to ask for cuDNN on an older stack. It is a preference, not a restriction: a shape or setting the
named kernel cannot serve falls back to the next, and every kernel computes the same attention.
The CPU picks its kernel in a fixed order (flash, then math) whatever the priorities say.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from torch.nn.attention import SDPBackend, sdpa_kernel

from genpt.config import ATTENTION_KERNELS

KERNELS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
# After the named kernel: torch's own fall-back order, with cuDNN before the math path (which serves
# every input) so that it stays reachable.
_FALLBACK = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
             SDPBackend.MATH)


def kernel_order(choice: str) -> list[SDPBackend] | None:
    """The priority order `choice` asks for; None keeps torch's own."""
    if choice not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel must be one of {', '.join(ATTENTION_KERNELS)}, got {choice!r}")
    if choice == "torch":
        return None
    first = KERNELS[choice]
    return [first, *(k for k in _FALLBACK if k != first)]


def preferred_attention_kernels(choice: str) -> AbstractContextManager:
    """A context in which scaled dot-product attention tries the kernels in `choice`'s order.

    Wrap the whole run, not a step: under `torch.compile` the kernel is picked when the graph is traced.
    """
    order = kernel_order(choice)
    return nullcontext() if order is None else sdpa_kernel(order, set_priority=True)
