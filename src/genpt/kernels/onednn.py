"""Float32 linear layers through oneDNN on the CPU: the same products, about twice as fast here.

PyTorch sends a float32 `F.linear` on the CPU to MKL, which takes its AVX2 path on AMD processors;
oneDNN (bundled with PyTorch, and already what bfloat16 uses) picks AVX-512 where the CPU has it.
`onednn_linear` runs the forward product and both backward products (input and weight gradients)
through `torch.ops.mkldnn._linear_pointwise`, the op Inductor itself lowers to; `applies` leaves
`F.linear` (the plain twin, genpt.kernels) everywhere else: GPUs, other dtypes, under autocast (which
casts to bfloat16 and so already reaches oneDNN), and when oneDNN is missing or turned off with
GENPT_ONEDNN_LINEAR=0. Only the order of
the floating-point sums changes (relative differences ~1e-7).
"""

from __future__ import annotations

import os

import torch


def available() -> bool:
    """Whether this PyTorch build has the op, and GENPT_ONEDNN_LINEAR does not turn it off."""
    if os.environ.get("GENPT_ONEDNN_LINEAR", "1") == "0":
        return False
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ENABLED = available()  # read once: `applies` checks it on every call


@torch.library.custom_op("genpt::onednn_linear", mutates_args=())
def product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias) by oneDNN, for any strides. An opaque op, so torch.compile calls it as it is."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


@product.register_fake
def _(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return a.new_empty((*a.shape[:-1], b.size(0)))


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                transposed_grad: bool) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.transposed_grad = transposed_grad
        return product(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = product(grad, weight.t())
        flat = grad.reshape(-1, grad.size(-1))
        if ctx.needs_input_grad[1]:
            rows = x.reshape(-1, x.size(-1))
            # grad_w = grad.T @ x. With more outputs than inputs (the LM head, the MLP's first layer)
            # oneDNN can be faster on (x.T @ grad).T (it copies the narrower operand into its layout), but
            # the transpose then costs a copy, single-threaded (8.7 ms for the 8192 x 384 head): which is
            # faster depends on the rows, so both are alternatives (`onednn`, `onednn_direct`), measured.
            if ctx.transposed_grad and weight.size(0) >= weight.size(1):
                grad_w = product(rows.t(), flat.t()).t().contiguous()
            else:
                grad_w = product(flat.t(), rows.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        return grad_x, grad_w, grad_b, None


def applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    return (
        ENABLED
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.dim() >= 2
        and not torch.is_autocast_enabled("cpu")
    )


def direct_applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Where `onednn_linear_direct` differs from `onednn_linear`: at least as many outputs as inputs."""
    return applies(x, weight, bias) and weight.size(0) >= weight.size(1)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` with all three products through oneDNN (where `applies`); the weight
    gradient of a layer with more outputs than inputs as (x.T @ grad).T."""
    return _OneDnnLinear.apply(x, weight, bias, True)


def onednn_linear_direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`onednn_linear` with every weight gradient as grad.T @ x: no transpose to copy."""
    return _OneDnnLinear.apply(x, weight, bias, False)


__all__ = ["applies", "available", "direct_applies", "onednn_linear", "onednn_linear_direct", "product"]
