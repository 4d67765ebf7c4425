"""Pre-training end to end through the `genpt` command: resume after SIGKILL, metrics, clear refusals."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from genpt.checkpoint import checkpoint_dirs
from genpt.data.corpus import prepare, train_tokenizer
from genpt.train.metrics_log import read_metrics

pytestmark = pytest.mark.slow  # every test here runs `genpt` in a subprocess, most of them training

SMALL = ["--set", "model.n_layer=2", "--set", "model.n_embd=32", "--set", "model.n_head=2",
         "--set", "model.n_ctx=32", "--set", "train.batch_size=4", "--set", "train.warmup_steps=10",
         "--set", "train.lr=3e-3", "--set", "train.log_interval=1", "--set", "train.eval_interval=50",
         "--set", "train.eval_batches=2", "--set", "train.checkpoint_interval=25"]


def genpt(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "genpt", *args], capture_output=True, text=True, env=env,
                          **kwargs)


def train_losses(run_dir):
    return [(row["step"], row["loss"]) for row in read_metrics(run_dir) if row["split"] == "train"]


def test_run_killed_with_sigkill_resumes_to_the_same_losses(shards, tmp_path):
    args = ["pretrain", "--shards", str(shards), *SMALL, "--max-steps", "200"]
    reference = genpt(*args, "-o", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genpt", *args, "-o", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step_00000075").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert checkpoint_dirs(run)[-1].name != "step_00000200"

    resumed = genpt("pretrain", "-o", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert train_losses(run) == train_losses(tmp_path / "ref")
    val = lambda d: [r for r in read_metrics(d) if r["split"] == "val"]  # noqa: E731
    assert [r["loss"] for r in val(run)] == [r["loss"] for r in val(tmp_path / "ref")]


def test_metrics_checkpoints_and_settings_are_in_the_run_folder(shards, tmp_path):
    run = tmp_path / "run"
    result = genpt("pretrain", "--shards", str(shards), *SMALL, "--set", "train.keep_checkpoints=2",
                   "--max-steps", "100", "-o", str(run))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000075", "step_00000100"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["n_layer"] == 2 and saved["train"]["max_steps"] == 100
    rows = read_metrics(run)
    assert {"step", "split", "loss", "lr", "tokens_per_s"} <= set(rows[0])
    val = [r for r in rows if r["split"] == "val"]
    assert val[-1]["step"] == 100 and val[-1]["perplexity"] < 400  # learned something over a 400-id vocab
    assert any((run / "tensorboard").iterdir())
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 100


def test_existing_run_is_not_overwritten_without_resume(shards, tmp_path):
    run = tmp_path / "run"
    assert genpt("pretrain", "--shards", str(shards), *SMALL, "--max-steps", "25", "-o", str(run)).returncode == 0
    before = (run / "checkpoints" / "step_00000025" / "model.safetensors").read_bytes()
    again = genpt("pretrain", "--shards", str(shards), *SMALL, "--max-steps", "25", "-o", str(run))
    assert again.returncode == 2
    assert "already holds a run" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (run / "checkpoints" / "step_00000025" / "model.safetensors").read_bytes() == before


def test_checkpoint_from_another_tokenizer_is_refused(shards, tmp_path):
    run = tmp_path / "run"
    assert genpt("pretrain", "--shards", str(shards), *SMALL, "--max-steps", "25", "-o", str(run)).returncode == 0
    other_root = tmp_path / "other"
    other_root.mkdir()
    (other_root / "a.txt").write_text("completely different text " * 500)
    (other_root / "b.txt").write_text("and yet more different words " * 500)
    other = other_root / "shards"
    prepare([other_root], train_tokenizer([other_root], vocab_size=300), other, val_fraction=0.5,
            workers=1, progress=False)
    result = genpt("pretrain", "-o", str(run), "--resume", "--shards", str(other), "--max-steps", "50")
    assert result.returncode == 2
    assert "different tokenizer" in result.stderr


def test_resuming_with_another_optimizer_is_one_line_exit_2(shards, tmp_path):
    run = tmp_path / "run"
    assert genpt("pretrain", "--shards", str(shards), *SMALL, "--max-steps", "25", "-o", str(run)).returncode == 0
    result = genpt("pretrain", "-o", str(run), "--resume", "--max-steps", "50", "--set", "train.optimizer=muon")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the settings the run logged
    assert last.startswith("genpt: error: ") and "optimizer.pt: does not fit this run's optimizer" in last
    assert "Traceback" not in result.stderr


def test_bad_set_key_is_one_line_exit_2(tmp_path):
    result = genpt("pretrain", "--set", "model.n_layers=2", "-o", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "genpt: error: unknown setting 'model.n_layers'; known: " + result.stderr.split("known: ")[1].strip()
    )
    assert not (tmp_path / "x").exists()


def test_output_cut_short_by_its_reader_ends_quietly(shards, tmp_path):
    """`genpt score ... | head`: the closed pipe ends the command without a traceback (exit 141, like Unix tools)."""
    run = tmp_path / "run"
    assert genpt("pretrain", "--shards", str(shards), *SMALL, "--max-steps", "2", "-o", str(run)).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genpt", "score", str(run), "--text", "to be or not " * 3000,
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.read(10)  # far less than the ~1 MB of JSON, which cannot all fit in the pipe
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err
