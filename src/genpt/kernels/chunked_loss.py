"""The LM loss through the tied head without the whole (tokens x vocab) logits tensor, for the CPU.

Projecting every position onto the vocabulary and taking the cross-entropy the plain way writes a
(tokens, vocab) float32 tensor, then reads and writes it again in log_softmax, its backward, the
zeroed NLL gradient and the head's two gradient products: on the small shape 67 MB, six times a
step. Here the rows go through in chunks that stay in cache: each chunk's logits give its share of
the loss and, at once, its gradients (softmax minus one-hot, over the number of scored positions),
which the backward pass only scales. The products go through oneDNN (genpt.kernels.onednn) or, in the
`chunked_mm` twin, PyTorch's default (MKL for float32), whichever genpt.kernels.select measures faster:
on an AVX-512 Xeon MKL's are, on an AMD EPYC oneDNN's. Under bfloat16 autocast a third twin,
`chunked_fused`, turns each chunk's logits into its loss and gradient rows in one loop compiled by
Inductor (genpt.kernels.inductor) instead of about ten eager passes (casts, logsumexp, exp, the one-hot,
the scale): at the cpu recipe's shape the loss's forward and backward take 167 against 266 ms (Xeon
model 207). The loss and gradients are those of
`F.cross_entropy(h @ weight.T, targets, ignore_index=IGNORE_INDEX)` (mean over the scored positions),
to float32 rounding; under bfloat16 autocast the products run in bfloat16 and
the softmax in float32, as autocast does on the plain path. GPUs and torch.compile keep the plain
twin (genpt.kernels), which Inductor fuses itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genpt.kernels import inductor, onednn
from genpt.kernels.onednn import product
from genpt.labels import IGNORE_INDEX

CHUNK_ELEMENTS = 1 << 21  # logits per chunk (8 MB of float32): about what a core's share of cache holds
MIN_ROWS = 256  # fewer rows make the weight-gradient product (a sum over rows) inefficient


def rows_per_chunk(vocab: int) -> int:
    return max(MIN_ROWS, CHUNK_ELEMENTS // vocab)


def mm_applies(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> bool:
    """On the CPU, when the logits span several chunks: with one or two, the plain path's fewer
    products win (GPT-1's shape at batch 1: 511 rows of 40,478 logits, 10% faster plain)."""
    rows = h.numel() // h.size(-1)
    return h.device.type == "cpu" and not torch.compiler.is_compiling() and rows > 4 * rows_per_chunk(vocab)


def applies(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> bool:
    """As `mm_applies`, where oneDNN is there."""
    return onednn.ENABLED and mm_applies(h, weight, targets, vocab)


def fused_applies(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> bool:
    """As `mm_applies`, training under bfloat16 autocast, where the compiled loop is not known to fail: in
    float32 there are no casts to save and the rest is a few percent of a step, not worth a compile."""
    return (mm_applies(h, weight, targets, vocab) and torch.is_grad_enabled() and h.requires_grad
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not inductor.failed("loss", torch.bfloat16))


def _softmax_grad(logits: torch.Tensor, safe: torch.Tensor, scored: torch.Tensor, row_scale: torch.Tensor,
                  want_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk's summed loss over its scored rows and its gradient rows, (softmax - one-hot) * row_scale,
    in the logits' dtype; the arithmetic in float32. Compiled into one loop (see the module's docstring),
    for training only (`want_grad`)."""
    lf = logits.float()
    top = lf.amax(-1, keepdim=True)
    e = (lf - top).exp()
    total = e.sum(-1, keepdim=True)
    loss = ((top + total.log() - lf.gather(1, safe)).squeeze(1) * scored).sum()
    target = torch.arange(lf.size(1), device=lf.device)[None, :] == safe
    return loss, ((e / total - target.float()) * row_scale[:, None]).to(logits.dtype)


def loop_compiles() -> bool:
    """Whether `_softmax_grad` compiles and runs here (genpt.kernels.inductor), tried on a small chunk."""
    def trial() -> None:  # wider than 4,096 ids, as real vocabularies are: Inductor recompiles across that size
        logits = torch.randn(3, 4099).bfloat16()
        scored = torch.ones(3)
        inductor.compiled(_softmax_grad)(logits, torch.tensor([[0], [5], [4098]]), scored, scored / 3)
    return inductor.works("loss", torch.bfloat16, trial)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T by PyTorch's default product (MKL for float32 on the CPU)."""
    return torch.mm(a, b.t())


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, mm=product,
                fused: bool = False) -> torch.Tensor:
        mm_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
        with torch.autocast("cpu", enabled=False):
            return _forward(ctx, h, weight, targets, mm_dtype, mm, fused)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h.mul_(grad), grad_w.mul_(grad), None, None, None


def _forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, mm_dtype: torch.dtype, mm,
             fused: bool):
    n, vocab = h.size(0), weight.size(0)
    scored = targets != IGNORE_INDEX
    count = max(int(scored.sum()), 1)
    want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
    w = weight.to(mm_dtype)
    w_t = w.t().contiguous() if want_grad else None  # (n_embd, vocab): the weight of the input-gradient product
    grad_h = torch.empty(h.shape, dtype=torch.float32) if want_grad else None
    grad_w_t = None
    total = torch.zeros((), dtype=torch.float64)
    rows = rows_per_chunk(vocab)
    for start in range(0, n, rows):
        hc = h[start : start + rows].to(mm_dtype)
        tc, sc = targets[start : start + rows], scored[start : start + rows]
        safe, scored_rows = tc.clamp_min(0)[:, None], sc.float()
        softmax_grad = inductor.compiled(_softmax_grad) if fused and want_grad else _eager_softmax_grad
        loss, g = softmax_grad(mm(hc, w), safe, scored_rows, scored_rows / count, want_grad)
        total += loss.double()
        if not want_grad:
            continue
        grad_h[start : start + rows] = mm(g, w_t)
        # This chunk's share of the weight gradient, transposed: (n_embd, vocab) is the faster layout.
        part = mm(hc.t(), g.t()).float()
        grad_w_t = part if grad_w_t is None else grad_w_t.add_(part)
    if want_grad:
        ctx.save_for_backward(grad_h.to(h.dtype), grad_w_t.t().contiguous().to(weight.dtype))
    return (total / count).to(torch.float32)


def _eager_softmax_grad(logits: torch.Tensor, safe: torch.Tensor, scored: torch.Tensor, row_scale: torch.Tensor,
                        want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`_softmax_grad` by PyTorch's ops, the loss in float64; the gradient rows only when `want_grad`."""
    lf = logits.float()
    lse = torch.logsumexp(lf, dim=-1)
    loss = ((lse - lf.gather(1, safe).squeeze(1)) * scored).sum(dtype=torch.float64)
    if not want_grad:
        return loss, None
    probs = lf.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
    probs.scatter_add_(1, safe, -scored[:, None])  # minus the one-hot target, on scored rows
    probs.mul_(row_scale[:, None])  # rows that score nothing get no gradient
    return loss, probs.to(logits.dtype)


def chunked_lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """The LM loss in chunks (where `applies`); chunks this size gain nothing from the padding: it is left out."""
    return _ChunkedLinearCrossEntropy.apply(h.reshape(-1, h.size(-1)), weight[:vocab], targets.reshape(-1))


def chunked_mm_lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """`chunked_lm_loss` with PyTorch's default products (where `mm_applies`)."""
    return _ChunkedLinearCrossEntropy.apply(h.reshape(-1, h.size(-1)), weight[:vocab], targets.reshape(-1), _mm)


def chunked_fused_lm_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """`chunked_mm_lm_loss` with each chunk's softmax and gradient in the compiled loop (where
    `fused_applies`); where the loop does not compile, `chunked_mm_lm_loss` itself."""
    if not loop_compiles():
        return chunked_mm_lm_loss(h, weight, targets, vocab)
    return _ChunkedLinearCrossEntropy.apply(h.reshape(-1, h.size(-1)), weight[:vocab], targets.reshape(-1), _mm,
                                            True)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """Mean cross-entropy over the first `vocab` logits, in float32, skipping IGNORE_INDEX targets."""
    logits = logits[..., :vocab] if logits.size(-1) > vocab else logits
    return F.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX)


__all__ = ["applies", "chunked_fused_lm_loss", "chunked_lm_loss", "chunked_mm_lm_loss", "cross_entropy",
           "fused_applies", "loop_compiles", "mm_applies", "rows_per_chunk"]
