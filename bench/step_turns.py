"""Training steps of genpt, nanoGPT and Hugging Face timed in turns: ratios that hold on a busy CPU.

train_throughput.py runs each implementation in its own process, one after the other: right on a quiet
machine, but on shared cores a busy spell lands on one implementation and not the next. Here every
variant has its own process too (its own allocator, kernel choices and threads, as a user runs it), but
they step in lockstep: each round runs one step of every variant, starting each round with the next one
in turn (so that none always runs first, after the others have warmed or cooled the caches), drift hits
all alike, and the medians over rounds are compared, each ratio with the middle half of the rounds'
ratios: where that range holds 1.0, the difference is inside the machine's drift. The step is
train_throughput's (forward with the LM loss, backward, the same fused AdamW).
genpt runs as it trains (freed host memory kept in the process: genpt.train.host_memory) in several ways:
with its kernels chosen by measurement on this CPU (genpt.kernels.select; the default), in the
registry's fixed order (GENPT_KERNELS=first: the fast paths as written, measured on another CPU), with
every plain twin (GENPT_KERNELS=plain), and with malloc left as it is (train.host_memory=system);
nanogpt-kept-memory is nanoGPT given the allocator setting genpt's training makes.

    python bench/step_turns.py --nanogpt .cache/nanogpt --shape small --dropout 0.1 --dtype float32
    python bench/step_turns.py --nanogpt .cache/nanogpt --shape gpt1 --batch 1 --dtype bfloat16 --rounds 6
    python bench/step_turns.py --nanogpt .cache/nanogpt --impls genpt,genpt-compile,nanogpt,nanogpt-compile --warmup 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

import torch
from train_throughput import ADAMW, NAMES, SHAPES, WEIGHT_DECAY, build_model, model_config
from workers import describe_machine, machine, round_ratios, src_path_env

from genpt.kernels import select
from genpt.train.optimizers import param_groups

GENPT_MODES = {"genpt": "measure", "genpt-first": "first", "genpt-plain": "plain", "genpt-system-memory": "measure"}
COMPILED = ("genpt-compile", "nanogpt-compile")  # torch.compile of the model (Inductor; the fast paths step aside)
# nanoGPT given the allocator setting genpt's training makes: what is left of genpt's lead without it.
KEPT_MEMORY_PEER = "nanogpt-kept-memory"
PEERS = ("nanogpt", KEPT_MEMORY_PEER, "hf")  # the columns each variant is compared with, where they ran
# The variants whose process keeps freed host memory: genpt's as genpt trains, but the one without it.
KEEPS_MEMORY = {*GENPT_MODES, "genpt-compile", KEPT_MEMORY_PEER} - {"genpt-system-memory"}
LABELS = {**NAMES, "genpt": "genpt (measured)", "genpt-first": "genpt (fixed order)",
          "genpt-plain": "genpt (plain twins)", "genpt-system-memory": "genpt (malloc as is)",
          "genpt-compile": "genpt torch.compile",
          "nanogpt-compile": "nanoGPT torch.compile", KEPT_MEMORY_PEER: "nanoGPT (memory kept)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=SHAPES, default="small")
    p.add_argument("--batch", type=int, default=0, help="sequences per step (default: the shape's)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=8, help="timed rounds (one step of each variant per round)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed rounds first (genpt measures its kernels here, torch.compile compiles)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--nanogpt", metavar="PATH", default="", help="a nanoGPT checkout (the folder of its model.py)")
    p.add_argument("--impls", default="genpt,genpt-first,nanogpt,hf",
                   help=f"comma-separated, of {', '.join(LABELS)} (nanogpt needs --nanogpt)")
    p.add_argument("--save", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--worker", metavar="IMPL", help=argparse.SUPPRESS)  # one variant's process (see Worker)
    args = p.parse_args(argv)
    args.vocab, args.pad_vocab = 0, 1  # what train_throughput.model_config reads
    args.batch = args.batch or SHAPES[args.shape][5]
    return args


def make_step(impl: str, config, args: argparse.Namespace):
    """One training step of `impl`, as a closure that installs its kernel selection first, and the selection."""
    torch.manual_seed(0)
    base = impl.removesuffix("-compile").removesuffix("-kept-memory")
    model = build_model("genpt" if base in GENPT_MODES else base, config, args.nanogpt).train()
    optimizer = torch.optim.AdamW(param_groups(model, WEIGHT_DECAY), **ADAMW, fused=True)
    ids = torch.randint(0, config.vocab_size, (args.batch, config.n_ctx))
    loss_only = {"return_logits": False} if base in GENPT_MODES else {}
    forward = torch.compile(model) if impl in COMPILED else model
    selector = select.Selector(GENPT_MODES[impl]) if impl in GENPT_MODES else None

    def step() -> float:
        select.use(selector)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
            loss = forward(ids, labels=ids, **loss_only).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, selector


REPLY = "step_turns: "  # the prefix of a worker's answers; anything else it prints (nanoGPT does) is passed on


def serve(args: argparse.Namespace) -> None:
    """A worker: build one variant's step, then answer each "step" with its seconds, and "stop" with the
    kernels genpt chose, as JSON."""
    impl = args.worker
    torch.set_num_threads(args.threads)
    if impl in KEEPS_MEMORY:
        from genpt.train import host_memory

        host_memory.keep_freed_memory()  # as genpt's training loop does on the CPU (train.host_memory=keep)
    step, selector = make_step(impl, model_config(args), args)
    print(REPLY + "ready", flush=True)
    for command in sys.stdin:
        if command.strip() == "step":
            start = time.perf_counter()
            step()
            print(REPLY + str(time.perf_counter() - start), flush=True)
        else:
            used = selector.used if selector else {}
            chosen = Counter(f"{key.partition('|')[0]}={c.chosen}" for key, c in used.items())
            print(REPLY + json.dumps(dict(chosen)), flush=True)
            return


class Worker:
    """One variant in its own process (this script with --worker), stepping when asked."""

    def __init__(self, impl: str, argv: list[str]):
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv, "--worker", impl],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=src_path_env())
        self.impl = impl
        self.answer()  # "ready": built (and, for genpt, imported) before the first timed round

    def answer(self) -> str:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return line[len(REPLY):].strip()
            print(f"  [{self.impl}] {line.rstrip()}", file=sys.stderr)
        sys.exit(f"{self.impl} worker stopped (exit {self.process.wait()}); its errors are above")

    def ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer()

    def step(self) -> float:
        return float(self.ask("step"))

    def stop(self) -> dict[str, int]:
        chosen = json.loads(self.ask("stop"))
        self.process.wait()
        return chosen


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        return serve(args)
    impls = [i for i in args.impls.split(",") if i and (not i.startswith("nanogpt") or args.nanogpt)]
    config = model_config(args)
    host = machine(args.threads)
    workers = {impl: Worker(impl, argv) for impl in impls}
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    tokens = args.batch * config.n_ctx
    load = [os.getloadavg()[0]]
    for r in range(args.warmup + args.rounds):
        for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
            elapsed = workers[impl].step()
            if r >= args.warmup:
                times[impl].append(elapsed)
        print(f"  round {r + 1}/{args.warmup + args.rounds}: " + ", ".join(
            f"{impl} {tokens / t[-1]:,.0f} tok/s" for impl, t in times.items() if t), file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    chosen_by = {impl: worker.stop() for impl, worker in workers.items()}
    tps = {impl: tokens / statistics.median(t) for impl, t in times.items()}
    # Each round's ratio, then their median and middle half: drift between rounds cancels out.
    paired = {(impl, peer): round_ratios(times[impl], times[peer])
              for impl in impls for peer in PEERS if peer in times}
    chosen = sorted(chosen_by.get("genpt", {}).items())
    print(describe_machine(host))
    print(f"shape {args.shape} ({config.n_layer} x {config.n_embd}, context {config.n_ctx}, vocab {config.vocab_size}),"
          f" batch {args.batch}, {args.dtype}, dropout {args.dropout:g}, {args.threads} threads; median of "
          f"{args.rounds} rounds in turns after {args.warmup}; load {load[0]:.1f} before, {load[1]:.1f} after")
    peers = [p for p in PEERS if p in tps]
    print(f"{'variant':<24}{'tokens/s':>10}{'min-max':>16}" + "".join(f"{'vs ' + p:>12}".ljust(25) for p in peers)
          + "  (ratios: median of each round's, middle half)")
    for impl, t in times.items():
        spread = f"{tokens / max(t):,.0f}-{tokens / min(t):,.0f}"
        print(f"{LABELS[impl]:<24}{tps[impl]:>10,.0f}{spread:>16}" + "".join(
            f"{paired[impl, p][0]:>11.2f}x{f'({paired[impl, p][1]:.2f}-{paired[impl, p][2]:.2f})':>13}"
            for p in peers))
    if chosen:
        print("genpt's kernels by measurement (number of call shapes; genpt doctor shows the times): "
              + ", ".join(f"{name} x{n}" for name, n in chosen))
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"machine": host, "settings": vars(args), "load": load, "tokens_per_s": tps,
                       "step_s": times, "ratios": {f"{a}/{b}": r[0] for (a, b), r in paired.items()},
                       "ratio_middle_half": {f"{a}/{b}": r[1:] for (a, b), r in paired.items()},
                       "chosen": dict(chosen)}, f, indent=2)


if __name__ == "__main__":
    main()
