"""Crash harness: pre-training and fine-tuning killed at random moments, each resumed, compared with a run
that was never interrupted.

For every kind (pretrain or finetune, SIGKILL or SIGTERM) and trial, a seeded generator picks where the
signal lands (in a step, in a checkpoint write, in an evaluation) and at which occurrence; the run is
started under bench/faults/inject.py, which signals itself there. Then:
  - every checkpoint the killed run left must be readable (weights, state, optimizer);
  - the same command with --resume must finish (exit 0);
  - the final weights must equal the uninterrupted run's bit for bit, and its metric rows (step, split,
    loss, lr, tokens) must be the same.

    nice -n 10 python bench/faults/crash.py --trials 24 --out /tmp/faults     # the full run (docs/reliability.md)
    python bench/faults/crash.py --trials 2                                    # a quick look

Prints one JSON line per trial and a summary per kind; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # inject.py, beside this file
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
KINDS = [("pretrain", "SIGKILL"), ("pretrain", "SIGTERM"), ("finetune", "SIGKILL"), ("finetune", "SIGTERM")]
EVENTS = ("step", "checkpoint", "eval")
WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls sing of rain and bright morning "
         "light on quiet hills").split()
MODEL = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2", "--set", "model.n_ctx=32"]
PRETRAIN = ["--set", "train.batch_size=4", "--set", "train.warmup_steps=3", "--set", "train.log_interval=1",
            "--set", "train.eval_interval=8", "--set", "train.eval_batches=4", "--set", "train.checkpoint_interval=5",
            "--set", "train.keep_checkpoints=2", "--max-steps", "24"]
FINETUNE = ["--task", "sst2", "--epochs", "3", "--batch-size", "4", "--lr", "1e-3"]


@dataclass
class Trial:
    kind: str
    signal: str
    event: str
    occurrence: int
    killed_rc: int
    checkpoints_left: int
    unreadable: int
    resumed_rc: int
    same_weights: bool
    same_metrics: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.unreadable == 0 and self.resumed_rc == 0 and self.same_weights and self.same_metrics


def genpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genpt", *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def resume_here(args: list[str], cwd: Path) -> tuple[int, str]:
    """`genpt ARGS` in this process (it is never killed, so it needs no process of its own)."""
    from genpt.cli import main

    logging.getLogger().handlers = [logging.NullHandler()]  # main's basicConfig then leaves logging alone
    err, here = io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            return main(args), err.getvalue()
    finally:
        os.chdir(here)


def injected(signal_name: str, event: str, n: int, counts: Path, args: list[str], cwd: Path) -> int:
    """Run `genpt ARGS` under inject.py in a forked child (torch already imported: no start-up to pay)."""
    import inject

    pid = os.fork()
    if pid == 0:  # the child: never returns into the harness
        code = 1
        try:
            os.chdir(cwd)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            logging.getLogger().handlers = []  # main's basicConfig then writes to the (silenced) stderr
            code = inject.run(signal_name, event, n, str(counts), args)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def prepare_inputs(root: Path) -> None:
    """A synthetic corpus, its tokenizer and shards, a pre-trained init and an SST-2-shaped task."""
    rng = np.random.default_rng(0)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(4, 12))))

    (root / "corpus").mkdir(parents=True)
    for i in range(4):
        (root / "corpus" / f"doc{i}.txt").write_text("\n".join(sentence() for _ in range(400)) + "\n")
    for args in (["tokenizer", "train", "corpus", "--vocab-size", "300", "-o", "tok.json"],
                 ["prepare", "corpus", "-t", "tok.json", "-o", "shards", "--val-fraction", "0.25", "--workers", "1"],
                 ["pretrain", "--shards", "shards", *MODEL, "--max-steps", "6", "--set", "train.batch_size=4",
                  "-o", "init"]):
        result = genpt(*args, cwd=root)
        if result.returncode:
            raise SystemExit(f"setting up failed: genpt {' '.join(args)}\n{result.stderr[-2000:]}")
    rows = ["sentence\tlabel"] + [f"{sentence()}\t{i % 2}" for i in range(26)]
    (root / "train.tsv").write_text("\n".join(rows) + "\n")
    (root / "dev.tsv").write_text("\n".join(rows[:11]) + "\n")


def command(kind: str, out: str) -> list[str]:
    if kind == "pretrain":
        return ["pretrain", "--shards", "shards", *MODEL, *PRETRAIN, "-o", out]
    return ["finetune", "--init", "init", "--train", "train.tsv", "--dev", "dev.tsv", *FINETUNE, "-o", out]


def final_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step_*"))[-1]


def readable(checkpoint: Path) -> bool:
    """Everything --resume would load from `checkpoint` loads."""
    from safetensors.torch import load_file

    from genpt.errors import GenptError
    from genpt.pickles import load_tensors

    try:
        load_file(checkpoint / "model.safetensors")
        json.loads((checkpoint / "config.json").read_text())
        state = json.loads((checkpoint / "state.json").read_text())
        load_tensors(checkpoint / "optimizer.pt")
        return isinstance(state, dict) and "step" in state
    except (OSError, ValueError, GenptError, Exception):
        return False


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def metric_rows(run: Path) -> list[tuple]:
    """The rows that do not depend on timing."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    keep = ("step", "split", "loss", "lr", "tokens", "accuracy")
    return [tuple(row.get(k) for k in keep) for row in rows]


def run_trial(root: Path, kind: str, signal_name: str, event: str, occurrence: int, index: int) -> Trial:
    began = time.monotonic()
    out = f"trials/{kind}-{signal_name}-{index:03d}"
    args = command(kind, out)
    killed_rc = injected(signal_name, event, occurrence, root / f"{out}.counts.json", args, root)
    run = root / out
    left = sorted((run / "checkpoints").glob("step_*")) if (run / "checkpoints").is_dir() else []
    unreadable = sum(not readable(c) for c in left)
    # As a user would: --resume where the run folder exists; a run killed before making it starts again.
    resumed_rc, stderr = resume_here(args + ["--resume"] if run.is_dir() else args, root)
    reference = root / f"reference-{kind}"
    ok = resumed_rc == 0
    trial = Trial(kind, signal_name, event, occurrence, killed_rc, len(left), unreadable, resumed_rc,
                  ok and same_weights(final_checkpoint(run), final_checkpoint(reference)),
                  ok and metric_rows(run) == metric_rows(reference), round(time.monotonic() - began, 1))
    if not trial.ok:
        print(stderr[-2000:], file=sys.stderr)
    return trial


def references(root: Path) -> dict[str, dict[str, int]]:
    """The uninterrupted runs, counted: how many steps, weights files and evaluations each kind has."""
    counts = {}
    for kind in ("pretrain", "finetune"):
        rc = injected("SIGKILL", "step", 0, root / f"reference-{kind}.counts.json",
                      command(kind, f"reference-{kind}"), root)
        if rc:
            raise SystemExit(f"the uninterrupted {kind} run failed (exit {rc})")
        counts[kind] = json.loads((root / f"reference-{kind}.counts.json").read_text())
    return counts


def run_all(root: Path, trials: int, seed: int = 0, report=print) -> list[Trial]:
    """`trials` trials of each kind, landing in steps, checkpoint writes and evaluations in turn."""
    import torch

    torch.set_num_threads(1)  # every run, forked or resumed here, sums in the same order: the same bits
    prepare_inputs(root)
    counts = references(root)
    rng = np.random.default_rng(seed)
    results = []
    for kind, signal_name in KINDS:
        for i in range(trials):
            event = EVENTS[i % len(EVENTS)]
            occurrence = int(rng.integers(1, counts[kind][event] + 1))
            trial = run_trial(root, kind, signal_name, event, occurrence, i)
            results.append(trial)
            report(json.dumps({**asdict(trial), "ok": trial.ok}))
    return results


def summary(results: list[Trial]) -> dict[str, dict[str, int]]:
    table = {}
    for kind, signal_name in KINDS:
        mine = [t for t in results if (t.kind, t.signal) == (kind, signal_name)]
        table[f"{kind} {signal_name}"] = {
            "trials": len(mine), **{f"in {e}": sum(t.event == e for t in mine) for e in EVENTS},
            "failed resumes": sum(t.resumed_rc != 0 for t in mine),
            "unreadable checkpoints": sum(t.unreadable for t in mine),
            "checkpoints inspected": sum(t.checkpoints_left for t in mine),
            "weights differ": sum(not t.same_weights for t in mine),
            "metrics differ": sum(not t.same_metrics for t in mine),
        }
    return table


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials per kind (4 kinds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="genpt-faults-"))
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root}: not empty")
    root.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"cpu": cpu_model(), "python": platform.python_version(),
                      "trials_per_kind": args.trials, "seed": args.seed}))
    began = time.monotonic()
    try:
        results = run_all(root, args.trials, args.seed)
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"summary": summary(results), "minutes": round((time.monotonic() - began) / 60, 1)}, indent=2))
    return 0 if all(t.ok for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
