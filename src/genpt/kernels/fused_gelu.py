"""GPT-1's tanh GELU as one compiled loop each way on the CPU: the same function at half the cost.

PyTorch's CPU kernel for `F.gelu(x, approximate="tanh")` costs about four times the exact GELU (on one
small-shape layer's 8 x 256 x 1536 bfloat16 values, 5.4 ms forward and 5.5 backward against 1.2 and 2.7,
Xeon model 207). The same function written as x * sigmoid(2u) (0.5 (1 + tanh u) = sigmoid(2u),
u = sqrt(2/pi) (x + 0.044715 x^3)) and compiled by Inductor into one vectorised loop for the forward and
one for the backward takes 2.5 and 3.1 ms, arithmetic in float32 as in PyTorch's kernel; the backward
recomputes from x, as PyTorch's does, so the same one tensor is saved. A training step in bf16 autocast
gains about 5% (`bench/path_turns.py --path gelu`).

In float32 the loops serve training only (inputs that require gradients): the step gains less, 3% on a
Zen 4 EPYC (float32 1.5 + 1.9 ms against 3.0 + 3.5 for the same layer), under 2% on the Xeon model 207,
and compiling costs seconds once per process and dtype (7 s cold, 0.5-3 s from Inductor's disk cache),
which a float32 server's first request or a generation would pay for nothing; genpt.kernels.select
measures the loops against the plain kernel on the machine, so a CPU where they do not win keeps
PyTorch's. Where Inductor cannot compile (genpt.kernels.inductor) PyTorch's kernel answers and the
path is not offered again. The loops take flat tensors, so no length compiles twice. Small calls (a
token at a time in generation) lose to the plain kernel, and genpt.kernels.select measures so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genpt.kernels import inductor

K = math.sqrt(2.0 / math.pi)
C = 0.044715
DTYPES = (torch.bfloat16,)
TRAINING_DTYPES = (torch.float32,)  # where the loops pay for their compile only in training


def _forward(x: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    return (xf / (1 + torch.exp(-2 * K * (xf + C * xf * xf * xf)))).to(x.dtype)


def _backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    s = 1 / (1 + torch.exp(-2 * K * (xf + C * xf * xf * xf)))
    return (grad.float() * (s + xf * s * (1 - s) * (2 * K) * (1 + 3 * C * xf * xf))).to(x.dtype)


def compiled(dtype: torch.dtype) -> bool:
    """Whether the loops compile and run for `dtype` (genpt.kernels.inductor), tried on a small input when
    the fused GELU first runs: a machine whose measured choice is the plain kernel never compiles."""
    def trial() -> None:
        x = torch.linspace(-4, 4, 4099, dtype=dtype)
        inductor.compiled(_forward)(x)
        inductor.compiled(_backward)(torch.ones_like(x), x)
    return inductor.works("GELU", dtype, trial)


class _FusedGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        with torch.autocast("cpu", enabled=False):
            # detached: the loops were compiled for tensors without gradients (`compiled`'s trial), and
            # Inductor would compile again for a requires_grad flag that cannot matter here
            return inductor.compiled(_forward)(x.detach().reshape(-1)).view(x.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return inductor.compiled(_backward)(grad.contiguous().reshape(-1), x.detach().reshape(-1)).view(x.shape)


def applies(x: torch.Tensor) -> bool:
    """CPU bfloat16, or float32 while training (`x` requires gradients), contiguous, outside torch.compile
    (which fuses the plain GELU itself), and not known to fail to compile."""
    training = x.requires_grad and torch.is_grad_enabled()
    return (x.device.type == "cpu" and (x.dtype in DTYPES or (x.dtype in TRAINING_DTYPES and training))
            and x.is_contiguous()
            and not torch.compiler.is_compiling() and not inductor.failed("GELU", x.dtype))


def fused_gelu(x: torch.Tensor) -> torch.Tensor:
    """`F.gelu(x, approximate="tanh")` by the compiled loops (where `applies`); by PyTorch's kernel where
    they do not compile."""
    if not compiled(x.dtype):
        return F.gelu(x, approximate="tanh")
    return _FusedGelu.apply(x)


__all__ = ["applies", "compiled", "fused_gelu"]
