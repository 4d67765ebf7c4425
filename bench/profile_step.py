"""Where a training step's time goes: genpt's GPT under torch.profiler, kernels grouped by kind.

The throughput benchmark says how fast a step is; this says what to make faster. It runs a few
warm-up steps (compilation included), then profiles `--steps` steps and prints the device time of
each kind of kernel (matrix products, attention, the optimizer, the loss, layer norms, GELU, the
other element-wise work) and the slowest kernels by name, and, beside them, the wall-clock time of
a step timed without the profiler: what the device is not busy for (waiting on the host) is the
difference. The step is train_throughput.py's: forward with the LM loss, backward, fused AdamW (or
`--optimizer muon`), synchronised at its end.

    python bench/profile_step.py --device cuda --shape gpt1 --batch 32 --compile --pad-vocab 64 --dropout 0
    python bench/profile_step.py --shape tiny          # on the CPU, a smoke test
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict

import torch
from train_throughput import SHAPES
from workers import describe_machine, machine

from genpt.config import ATTENTION_KERNELS, COMPILE_MODES, TRAIN_KERNELS, ModelConfig, TrainConfig
from genpt.kernels import preferred_attention_kernels
from genpt.kernels.backends import apply_backends
from genpt.model import GPT
from genpt.train.optimizers import make_optimizer

# The first pattern found in a kernel's (lower-cased) name decides its kind. Inductor names a fused
# kernel after every operation in it, so the telling ones come before the casts they fuse.
KINDS = [
    ("loss", re.compile(r"cross_entropy|nll_loss|log_softmax|logsumexp")),
    ("attention", re.compile(r"flash|attention|fmha|sdpa|softmax|bmm|cudnn::fusion")),
    ("matmul (Muon's iterations too)",
     re.compile(r"\bmm\b|addmm|gemm|matmul|cutlass|xmma|nvjet|cublas|splitk|linear|mkldnn")),
    ("optimizer", re.compile(r"adam|muon|foreach|multi_tensor")),
    ("float8 scaling (amax, casts)", re.compile(r"abs_max|amax|float8|fp8")),
    ("layer norm", re.compile(r"layer_norm")),
    ("GELU", re.compile(r"gelu")),
    ("copy/cast", re.compile(r"copy|cast|\bcat\b|fill|memset")),
]
# Ranges the profiler records beside the kernels (record_function, compiled regions): not kernels,
# and counting them would count their kernels' time twice.
ANNOTATION = re.compile(r"^[\w.]+#|^Torch-Compiled Region|^CompiledFunction")


def kind(name: str) -> str:
    lowered = name.lower()
    return next((label for label, pattern in KINDS if pattern.search(lowered)),
                "other element-wise (residual adds, dropout, bias sums)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=SHAPES, default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default="default", choices=COMPILE_MODES, help="torch.compile's mode")
    p.add_argument("--kernels", default="torch", choices=TRAIN_KERNELS, help="train.kernels: whose fused kernels")
    p.add_argument("--float8", action="store_true", help="train.float8: torchao's float8 block linears")
    p.add_argument("--pad-vocab", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw")
    p.add_argument("--attention-kernel", default="torch", choices=ATTENTION_KERNELS,
                   help="SDPA's first choice (train.attention_kernel)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=20, help="how many kernels to list by name")
    p.add_argument("--save", metavar="PATH", help="also write the table as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    n_layer, n_embd, n_head, n_ctx, vocab, _ = SHAPES[args.shape]
    config = ModelConfig(vocab_size=vocab, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                         embd_pdrop=args.dropout, attn_pdrop=args.dropout, resid_pdrop=args.dropout,
                         pad_vocab_multiple=args.pad_vocab)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = GPT(config).to(device).train()
    applied = apply_backends(model, args.kernels, args.float8, device)
    optimizer = make_optimizer(model, TrainConfig(optimizer=args.optimizer), device)
    forward = torch.compile(model, mode=args.compile_mode) if args.compile else model
    ids = torch.randint(0, vocab, (args.batch, n_ctx), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

    def step() -> None:
        with autocast:
            loss = forward(ids, labels=ids, return_logits=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def timed_step() -> float:
        sync()
        start = time.perf_counter()
        step()
        sync()
        return time.perf_counter() - start

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    # For the whole run: under torch.compile the attention kernel is chosen when the graph is traced.
    with preferred_attention_kernels(args.attention_kernel):
        for _ in range(args.warmup):
            step()
        wall_ms = 1000 * statistics.median(timed_step() for _ in range(args.steps))  # ends synchronised
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(args.steps):
                step()
            sync()

    on_device = device.type == "cuda"
    by_name: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        # On the GPU the kernels' own time; on the CPU the operators' self time (no double counting).
        us = event.self_device_time_total if on_device else event.self_cpu_time_total
        if (us > 0 and not ANNOTATION.search(event.key)
                and (not on_device or event.device_type == torch.autograd.DeviceType.CUDA)):
            by_name[event.key] += us / args.steps
    total = sum(by_name.values())
    by_kind: dict[str, float] = defaultdict(float)
    for name, us in by_name.items():
        by_kind[kind(name)] += us
    unit = "device" if on_device else "CPU self"
    print(f"{args.shape} shape, batch {args.batch} x {n_ctx}, {args.dtype}, {args.device}"
          f"{f', compiled ({args.compile_mode})' if args.compile else ''}"
          f"{', ' + ', '.join(applied) if applied else ''}, dropout {args.dropout:g}, optimizer {args.optimizer}, "
          f"attention kernel {args.attention_kernel}: "
          f"{total / 1000:.1f} ms of {unit} time per step; {wall_ms:.1f} ms of wall-clock time unprofiled"
          f" (median of {args.steps})")
    print(describe_machine(machine()))
    for label, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<55}{us / 1000:>9.2f} ms {us / total:>6.1%}")
    print(f"\nslowest {args.top} by name:")
    for name, us in sorted(by_name.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {us / 1000:>8.2f} ms {us / total:>6.1%}  {name[:110]}")
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"settings": vars(args), "ms_per_step": total / 1000, "wall_ms_per_step": wall_ms,
                       "by_kind_ms": {k: v / 1000 for k, v in by_kind.items()},
                       "by_name_ms": {k: v / 1000 for k, v in by_name.items()}}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
