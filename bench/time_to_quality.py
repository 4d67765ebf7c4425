"""Time to quality: how many seconds of genpt's own pre-training loop reach a validation loss.

Runs `genpt pretrain` (the real loop: data from shards, dropout, clipping, the schedule, periodic
evaluation on books held out of training) at GPT-1's shape for a training-time budget, then reads
the run's metrics: validation loss against seconds of training. Compilation is not training: its
cost is estimated from the first logged interval (its time less that many steady steps) and taken
off, and reported beside. Evaluation and checkpoint writing are outside `train_seconds` already.

The anchor is the issue's reference run (nanoGPT's model, same shape, a 16,384-id byte-level BPE,
Gutenberg books, bf16, compile, batch 64 x 512, cosine over 150 s): validation loss 5.02 at 15 s,
4.07 at 60 s, 3.86 at 105 s, 3.81 at 150 s (+50 s compile).

    python bench/time_to_quality.py --shards SHARDS --seconds 100 --tokens-per-s 600000 -o runs/ttq
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from workers import describe_machine, machine

ANCHOR = [(15, 5.02), (60, 4.07), (105, 3.86), (150, 3.81)]
TARGET = 3.81


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, help="prepared shards (16,384-id tokenizer, held-out books in val)")
    p.add_argument("--seconds", type=float, default=100.0, help="training-time budget the schedule spans")
    p.add_argument("--tokens-per-s", type=float, required=True,
                   help="expected training throughput; sets the step count that fills the budget")
    p.add_argument("--lr", type=float, default=4e-4, help="6e-4 collapsed to the unigram plateau on an H200")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--schedule", choices=("cosine", "linear"), default="cosine",
                   help="decay to zero over the budget after the warm-up (train.lr_schedule)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw", help="genpt's train.optimizer")
    p.add_argument("--muon-lr", type=float, default=0.0, help="train.muon_lr: Muon's peak (0: --lr)")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="model.*_pdrop (GPT-1: 0.1; a budget of one pass over the books barely needs it)")
    p.add_argument("--pad-vocab", type=int, default=64, help="model.pad_vocab_multiple")
    p.add_argument("--eval-interval", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more genpt settings, after these (a smoke test: --set model.n_layer=2 ...)")
    p.add_argument("--output", "-o", required=True, help="run folder (must not exist)")
    return p.parse_args(argv)


def pretrain_command(args: argparse.Namespace, steps: int) -> list[str]:
    settings = {
        "model.n_layer": 12, "model.n_embd": 768, "model.n_head": 12, "model.n_ctx": 512,
        "model.embd_pdrop": args.dropout, "model.attn_pdrop": args.dropout, "model.resid_pdrop": args.dropout,
        "model.pad_vocab_multiple": args.pad_vocab, "train.optimizer": args.optimizer, "train.muon_lr": args.muon_lr,
        "train.batch_size": args.batch, "train.lr": args.lr, "train.warmup_steps": args.warmup,
        "train.beta2": args.beta2, "train.lr_schedule": args.schedule, "train.dtype": "bfloat16",
        "train.compile": "true",
        "train.log_interval": 10, "train.eval_interval": args.eval_interval, "train.eval_batches": args.eval_batches,
        "train.checkpoint_interval": 1_000_000, "train.keep_checkpoints": 1,
    }
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
    sets += [x for kv in args.set for x in ("--set", kv)]
    return [sys.executable, "-m", "genpt", "pretrain", "--shards", args.shards, *sets, "--max-steps", str(steps),
            "-o", args.output]


def read(run: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "val"]


def compile_seconds(train: list[dict]) -> tuple[float, float]:
    """(estimated compile time, steady seconds per step) from the train records' train_seconds."""
    pairs = zip(train[1:], train[2:], strict=False)
    steady = statistics.median((b["train_seconds"] - a["train_seconds"]) / (b["step"] - a["step"]) for a, b in pairs)
    first = train[0]
    return max(0.0, first["train_seconds"] - first["step"] * steady), steady


def crossing(points: list[tuple[float, float]], target: float) -> float | None:
    """The first time the loss reaches `target`, interpolated linearly between evaluations."""
    for (t0, l0), (t1, l1) in zip(points, points[1:], strict=False):
        if l1 <= target:
            return t1 if l0 == l1 else t0 + (t1 - t0) * (l0 - target) / (l0 - l1)
    return None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    n_ctx = next((int(kv.split("=")[1]) for kv in args.set if kv.startswith("model.n_ctx=")), 512)
    steps = max(args.warmup + 10, int(args.seconds * args.tokens_per_s / (args.batch * n_ctx)))
    print(f"{steps} steps of {args.batch} x {n_ctx} tokens to fill {args.seconds:g} s "
          f"at {args.tokens_per_s:,.0f} tok/s", flush=True)
    print(describe_machine(machine()), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(pretrain_command(args, steps), env=env)
    if done.returncode != 0:
        sys.exit(f"genpt pretrain failed (exit {done.returncode})")
    train, val = read(Path(args.output))
    compile_s, steady = compile_seconds(train)
    at = {r["step"]: r["train_seconds"] - compile_s for r in train}
    points = [(at[r["step"]], r["loss"]) for r in val if r["step"] in at]
    print(f"\ncompile ~{compile_s:.0f} s (not counted); steady {steady * 1000:.0f} ms/step = "
          f"{args.batch * n_ctx / steady:,.0f} tok/s")
    print(f"{'step':>6}{'train s':>9}{'val loss':>10}")
    for (t, loss), r in zip(points, [r for r in val if r["step"] in at], strict=True):
        print(f"{r['step']:>6}{t:>9.1f}{loss:>10.3f}")
    reached = crossing(points, TARGET)
    anchor = ", ".join(f"{v} at {t} s" for t, v in ANCHOR)
    print(f"\nanchor (nanoGPT's model): {anchor}")
    print(f"genpt reaches {TARGET} at " + (f"{reached:.0f} s of training" if reached else "no point in this run")
          + f"; final val loss {points[-1][1]:.3f} at {points[-1][0]:.0f} s")
    summary = {"steps": steps, "compile_s": compile_s, "steady_tok_s": args.batch * n_ctx / steady,
               "points": points, "reached_target_s": reached, "settings": vars(args)}
    (Path(args.output) / "time_to_quality.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
