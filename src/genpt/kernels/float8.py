"""float8 training of the linear layers by torchao (`train.float8=true`), on GPUs that have float8
matrix units (compute capability 8.9 or newer: L4/Ada, H100/H200, Blackwell).

`torchao.float8.convert_to_float8_training` swaps `nn.Linear` for its `Float8Linear` (the same
weight and bias parameters): inputs and weights are cast to float8 e4m3 with one dynamic scale per
tensor, the output gradient to e5m2, and the three products of each layer run in float8 with
higher-precision accumulation. Which layers: those whose weight is not an embedding's (GPT-1's tied
LM head stays in bf16: its products are the loss's, and the logits are where rounding costs most)
and whose two dimensions are multiples of 16 (what the float8 product needs): for GPT-1 the four
matrices of each block. Embeddings, layer norms, attention and the loss are untouched.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

MIN_CAPABILITY = (8, 9)


def missing(device: torch.device) -> str | None:
    """Why float8 training cannot run here, or None."""
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed: pip install 'genpt[gpu]'"
    if device.type != "cuda":
        return f"float8 matrix products need a CUDA GPU of compute capability 8.9 or newer, not {device.type}"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        return (f"float8 matrix products need compute capability 8.9 or newer; "
                f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}")
    return None


def convertible(model: nn.Module) -> set[str]:
    """Names of the linear layers float8 applies to: not tied to an embedding, dimensions multiples of 16."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and id(m.weight) not in embeddings
            and m.in_features % 16 == 0 and m.out_features % 16 == 0}


def apply(model: nn.Module, *, emulate: bool = False) -> list[str]:
    """Convert `model`'s eligible linear layers in place; return their names. `emulate` runs the float8
    products as float32 products of float8-rounded operands, on any device (torchao's own emulation,
    for tests)."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    names = convertible(model)
    convert_to_float8_training(model, config=Float8LinearConfig(emulate=emulate),
                               module_filter_fn=lambda module, fqn: fqn in names)
    return sorted(names)


__all__ = ["MIN_CAPABILITY", "apply", "convertible", "missing"]
