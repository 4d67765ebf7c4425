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

from genpt.config import ATTENTION_KERNELS, COMPILE_MODES, HOST_MEMORY, TRAIN_KERNELS, ModelConfig, TrainConfig
from genpt.kernels import preferred_attention_kernels, select
from genpt.kernels.backends import apply_backends
from genpt.model import GPT
from genpt.train import host_memory
from genpt.train.optimizers import make_optimizer

MATMUL = "matmul (Muon's iterations too)"
# The first pattern found in a kernel's (lower-cased) name decides its kind. Inductor names a fused
# kernel after every operation in it, so the telling ones come before the casts they fuse.
KINDS = [
    ("loss", re.compile(r"cross_entropy|nll_loss|log_softmax|logsumexp")),
    ("attention", re.compile(r"flash|attention|fmha|sdpa|softmax|bmm|cudnn::fusion")),
    (MATMUL,
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
    p.add_argument("--steps", type=int, default=5, help="profiled steps of each implementation per round")
    p.add_argument("--rounds", type=int, default=1, help="rounds of --steps, the implementations in turn")
    p.add_argument("--nanogpt", metavar="PATH", default="",
                   help="a nanoGPT checkout: profile its model's step too, side by side (CPU)")
    p.add_argument("--host-memory", choices=HOST_MEMORY, default="keep",
                   help="train.host_memory, for the whole process (nanoGPT's step beside genpt's too)")
    p.add_argument("--top", type=int, default=20, help="how many kernels to list by name")
    p.add_argument("--save", metavar="PATH", help="also write the table as JSON")
    return p.parse_args(argv)


def genpt_step(args: argparse.Namespace, config: ModelConfig, device: torch.device):
    """genpt's training step as this script's settings ask, and the backends applied."""
    torch.manual_seed(0)
    model = GPT(config).to(device).train()
    applied = apply_backends(model, args.kernels, args.float8, device)
    optimizer = make_optimizer(model, TrainConfig(optimizer=args.optimizer), device)
    forward = torch.compile(model, mode=args.compile_mode) if args.compile else model
    ids = torch.randint(0, config.vocab_size, (args.batch, config.n_ctx), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    kernels = select.selector()  # reinstalled at each step: nanoGPT's step (step_turns.make_step) clears it

    def step() -> None:
        select.use(kernels)
        with autocast:
            loss = forward(ids, labels=ids, return_logits=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, applied


def nanogpt_step(args: argparse.Namespace, config: ModelConfig):
    """nanoGPT's step as bench/step_turns.py times it (its model from the checkout, fused AdamW)."""
    from step_turns import make_step

    return make_step("nanogpt", config, args)[0]


def by_kernel(prof, steps: int, on_device: bool) -> dict[str, float]:
    """Microseconds per step by kernel name: on the GPU the kernels' own time; on the CPU the operators'
    self time (no double counting)."""
    by_name: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        us = event.self_device_time_total if on_device else event.self_cpu_time_total
        if (us > 0 and not ANNOTATION.search(event.key)
                and (not on_device or event.device_type == torch.autograd.DeviceType.CUDA)):
            by_name[event.key] += us / steps
    return by_name


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    n_layer, n_embd, n_head, n_ctx, vocab, _ = SHAPES[args.shape]
    config = ModelConfig(vocab_size=vocab, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                         embd_pdrop=args.dropout, attn_pdrop=args.dropout, resid_pdrop=args.dropout,
                         pad_vocab_multiple=args.pad_vocab)
    device = torch.device(args.device)
    host = machine()  # before the steps: its product ceilings are measured on quiet cores
    host_memory.apply(args.host_memory, device.type)  # as genpt's training loop does
    if args.nanogpt and device.type != "cpu":
        sys.exit("--nanogpt: the side-by-side profile runs on the CPU (bench/step_turns.py's nanoGPT step)")
    step, applied = genpt_step(args, config, device)
    steps = {"genpt": step}
    if args.nanogpt:
        steps["nanogpt"] = nanogpt_step(args, config)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def timed(step) -> float:
        sync()
        start = time.perf_counter()
        step()
        sync()
        return time.perf_counter() - start

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    on_device = device.type == "cuda"
    wall: dict[str, list[float]] = {impl: [] for impl in steps}
    by_name: dict[str, dict[str, float]] = {impl: defaultdict(float) for impl in steps}
    # For the whole run: under torch.compile the attention kernel is chosen when the graph is traced.
    with preferred_attention_kernels(args.attention_kernel):
        for _ in range(args.warmup):
            for step in steps.values():
                step()
        # In rounds, each implementation in turn, so that the host's drift lands on all of them alike.
        for _ in range(args.rounds):
            for impl, step in steps.items():
                wall[impl] += [timed(step) for _ in range(args.steps)]  # ends synchronised
                with torch.profiler.profile(activities=activities) as prof:
                    for _ in range(args.steps):
                        step()
                    sync()
                for name, us in by_kernel(prof, args.steps * args.rounds, on_device).items():
                    by_name[impl][name] += us
    wall_ms = {impl: 1000 * statistics.median(t) for impl, t in wall.items()}
    total = {impl: sum(names.values()) for impl, names in by_name.items()}
    by_kind: dict[str, dict[str, float]] = {}
    for impl, names in by_name.items():
        by_kind[impl] = defaultdict(float)
        for name, us in names.items():
            by_kind[impl][kind(name)] += us
    unit = "device" if on_device else "CPU self"
    print(f"{args.shape} shape, batch {args.batch} x {n_ctx}, {args.dtype}, {args.device}"
          f"{f', compiled ({args.compile_mode})' if args.compile else ''}"
          f"{', ' + ', '.join(applied) if applied else ''}, dropout {args.dropout:g}, optimizer {args.optimizer}, "
          f"host memory {args.host_memory}, "
          f"attention kernel {args.attention_kernel}: "
          + "; ".join(f"{impl} {total[impl] / 1000:.1f} ms of {unit} time per step, {wall_ms[impl]:.1f} ms of "
                      f"wall-clock time unprofiled" for impl in steps)
          + f" (medians of {args.steps} x {args.rounds} steps)")
    print(describe_machine(host))
    print(f"  {'kind':<55}" + "".join(f"{impl:>20}" for impl in steps))
    for label, _ in sorted(by_kind["genpt"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<55}" + "".join(
            f"{by_kind[impl].get(label, 0.0) / 1000:>10.2f} ms {by_kind[impl].get(label, 0.0) / total[impl]:>6.1%}"
            for impl in steps))
    bound = None
    if "nanogpt" in steps:
        # The most genpt could lead by if all but its products took no time at all: what the rest can buy.
        bound = wall_ms["nanogpt"] * 1000 / by_kind["genpt"][MATMUL]
        print(f"genpt {wall_ms['nanogpt'] / wall_ms['genpt']:.2f}x nanoGPT's step here; nanoGPT's step over genpt's "
              f"products alone: {bound:.2f}x (the lead genpt would have if nothing but its products took time)")
    print(f"\nslowest {args.top} of genpt's by name:")
    for name, us in sorted(by_name["genpt"].items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {us / 1000:>8.2f} ms {us / total['genpt']:>6.1%}  {name[:110]}")
    if args.save:
        def summary(impl: str) -> dict:
            return {"ms_per_step": total[impl] / 1000, "wall_ms_per_step": wall_ms[impl],
                    "by_kind_ms": {k: v / 1000 for k, v in by_kind[impl].items()},
                    "by_name_ms": {k: v / 1000 for k, v in by_name[impl].items()}}

        with open(args.save, "w") as f:
            json.dump({"settings": vars(args), "machine": host, **summary("genpt"),
                       "peers": {impl: summary(impl) for impl in steps if impl != "genpt"},
                       "nanogpt_step_over_genpt_products": bound}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
