"""One fast path's alternatives inside whole training steps: one model, steps alternating between them.

bench/cpu_ablation.py builds a model per variant and stacks the paths, so a gain of a few percent from
one path drowns in the others' and in the machine's drift. Here one genpt model and optimizer take
turns of steps that differ only in the named path's alternative (every other path at its plain twin,
or as GENPT_KERNELS-style `--others` say), and each round's ratio to the plain twin is reported, the
median over rounds with the middle half of their spread.

    python bench/path_turns.py --path gelu --dtype bfloat16 --rounds 24
    python bench/path_turns.py --path dropout --dropout 0.1 --others attention=cpu_dropout
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from train_throughput import ADAMW, SHAPES, WEIGHT_DECAY, build_model, model_config
from workers import describe_machine, machine, round_ratios

from genpt import kernels
from genpt.kernels import select
from genpt.train.optimizers import param_groups


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", required=True, choices=sorted(kernels.PATHS))
    p.add_argument("--shape", choices=SHAPES, default="small")
    p.add_argument("--batch", type=int, default=0, help="sequences per step (default: the shape's)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--others", default="", help="path=alternative pairs for the other paths (default: plain)")
    args = p.parse_args(argv)
    args.vocab, args.pad_vocab = 0, 1  # what train_throughput.model_config reads
    args.batch = args.batch or SHAPES[args.shape][5]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = model_config(args)
    torch.manual_seed(0)
    model = build_model("genpt", config, "").train()
    optimizer = torch.optim.AdamW(param_groups(model, WEIGHT_DECAY), **ADAMW, fused=True)
    ids = torch.randint(0, config.vocab_size, (args.batch, config.n_ctx))
    others = ",".join(f"{name}=plain" for name in kernels.PATHS if name != args.path)
    alternatives = kernels.PATHS[args.path].names()
    selectors = {alt: select.Selector(",".join(filter(None, ["first", others, args.others, f"{args.path}={alt}"])),
                                      select.Cache(None)) for alt in alternatives}

    def step(alt: str) -> float:
        select.use(selectors[alt])
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
            loss = model(ids, labels=ids, return_logits=False).loss
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    host = machine(torch.get_num_threads())
    times: dict[str, list[float]] = {alt: [] for alt in alternatives}
    for r in range(args.warmup + args.rounds):
        order = alternatives if r % 2 else alternatives[::-1]  # neither side always goes first
        for alt in order:
            seconds = step(alt)
            if r >= args.warmup:
                times[alt].append(seconds)
        print(f"  round {r + 1}/{args.warmup + args.rounds}", file=sys.stderr, end="\r", flush=True)
    plain = alternatives[-1]
    tokens = args.batch * config.n_ctx
    print(describe_machine(host))
    print(f"path {args.path}; shape {args.shape}, batch {args.batch}, {args.dtype}, dropout {args.dropout:g}; "
          f"other paths: {args.others or 'plain'}; {args.rounds} rounds after {args.warmup}")
    print(f"{'alternative':<14}{'tokens/s':>10}{'speed vs ' + plain:>18}{'middle half':>16}")
    for alt, ts in times.items():
        median, low, high = round_ratios(ts, times[plain])
        print(f"{alt:<14}{tokens / statistics.median(ts):>10,.0f}{median:>17.3f}x{f'{low:.3f}-{high:.3f}':>16}")


if __name__ == "__main__":
    main()
