"""Graceful pre-emption: SIGTERM (what cluster schedulers send) and a first Ctrl-C end the current step,
write its metrics and a checkpoint, and exit; --resume then gives exactly the uninterrupted run. Time-
based checkpoints give a short run something to resume from without changing a single metric."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from genpt.train.metrics_log import read_metrics

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set", "model.n_ctx=16",
        "--set", "train.batch_size=2", "--set", "train.warmup_steps=2", "--set", "train.log_interval=5",
        "--set", "train.eval_interval=20", "--set", "train.eval_batches=2", "--set", "train.checkpoint_interval=1000",
        "--max-steps", "60"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def genpt(*args):
    return subprocess.run([sys.executable, "-m", "genpt", *args], capture_output=True, text=True, env=ENV, timeout=300)


def rows(run):
    keep = ("step", "split", "loss", "lr", "tokens", "perplexity")
    return [tuple(r.get(k) for k in keep) for r in read_metrics(run)]


def final_weights(run):
    return load_file(sorted((run / "checkpoints").glob("step_*"))[-1] / "model.safetensors")


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    result = genpt("pretrain", "--shards", str(shards), *TINY, "-o", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def wait_for_row(run, step, proc, seconds=120):
    """Until metrics.jsonl holds a train row at `step` or later (a marker, not a sleep of a guessed length)."""
    deadline = time.monotonic() + seconds
    while True:
        path = run / "metrics.jsonl"
        if path.exists() and any(json.loads(line)["step"] >= step for line in path.read_text().splitlines()
                                 if line.endswith("}")):
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
def test_a_signal_saves_the_current_step_and_resume_gives_the_uninterrupted_run(shards, reference, tmp_path,
                                                                                 signum, code):
    run = tmp_path / "run"
    args = ["pretrain", "--shards", str(shards), *TINY, "-o", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "genpt", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_row(run, 5, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    last = stderr.strip().splitlines()[-1]
    assert proc.returncode == code and last.startswith(f"genpt: stopped by {signal.Signals(signum).name} after step")
    step = int(last.split("after step ")[1].split(",")[0])
    assert step < 60, "the run ended before the signal"
    assert (run / "checkpoints" / f"step_{step:08d}" / "model.safetensors").is_file()  # interval 1000: only ours
    assert [r for r in rows(run)] == [r for r in rows(reference) if r[0] <= step]  # no row lost, none extra
    result = genpt(*args, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert rows(run) == rows(reference)
    ours, theirs = final_weights(run), final_weights(reference)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
def test_time_based_checkpoints_leave_every_metric_unchanged(shards, reference, tmp_path):
    run = tmp_path / "run"
    result = genpt("pretrain", "--shards", str(shards), *TINY, "--set", "train.checkpoint_minutes=1e-9",
                   "--set", "train.keep_checkpoints=100", "-o", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    saved = sorted(int(p.name.removeprefix("step_")) for p in (run / "checkpoints").glob("step_*"))
    assert saved == list(range(1, 61))  # always due: one after every step, logged or not
    assert rows(run) == rows(reference)
    # Resuming from a checkpoint between two reports (58: logged at 55 and 60) continues the same curve.
    for late in (59, 60):
        shutil.rmtree(run / "checkpoints" / f"step_{late:08d}")
    result = genpt("pretrain", "-o", str(run), "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert rows(run) == rows(reference)
