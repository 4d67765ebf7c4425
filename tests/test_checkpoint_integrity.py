"""Checkpoints are verified: a manifest of sizes and SHA-256s written last, checked on load; --resume skips a
damaged newest checkpoint for the newest intact one; a disk that fills up mid-write keeps the previous one."""

import hashlib
import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from genpt.cli import main
from genpt.train.metrics_log import read_metrics

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=64", "--set", "model.n_head=2", "--set", "model.n_ctx=16",
        "--set", "train.batch_size=2", "--set", "train.warmup_steps=1", "--set", "train.checkpoint_interval=2",
        "--set", "train.log_interval=1", "--set", "train.eval_interval=2", "--set", "train.eval_batches=1"]


def rows(run):
    return [(r["step"], r["split"], r["loss"]) for r in read_metrics(run)]


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main(["pretrain", "--shards", str(shards), *TINY, "-o", str(run), "--max-steps", "6"]) == 0
    return run


def test_the_manifest_lists_every_file_with_its_size_and_sha256(reference):
    checkpoint = reference / "checkpoints" / "step_00000006"
    files = json.loads((checkpoint / "manifest.json").read_text())["files"]
    on_disk = sorted(p.name for p in checkpoint.iterdir() if p.name != "manifest.json")
    assert sorted(files) == on_disk and {"model.safetensors", "optimizer.pt", "state.json"} <= set(files)
    for name, entry in files.items():
        data = (checkpoint / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_resume_skips_a_damaged_newest_checkpoint_for_the_newest_intact_one(shards, reference, tmp_path, capsys,
                                                                           stderr_logging):
    run = tmp_path / "run"
    args = ["pretrain", "--shards", str(shards), *TINY, "-o", str(run)]
    assert main([*args, "--max-steps", "4"]) == 0
    damaged = run / "checkpoints" / "step_00000004" / "optimizer.pt"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: what a bad sector or a torn write does
    damaged.write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*args, "--max-steps", "6", "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "step_00000002" in warnings[0]
    assert rows(run) == rows(reference)
    ours = load_file(run / "checkpoints" / "step_00000006" / "model.safetensors")
    theirs = load_file(reference / "checkpoints" / "step_00000006" / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB file system of its own (tmpfs), so that it can be filled; needs the right to mount."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN) to fill a disk")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder, leave: int) -> None:
    """Write a file until the disk is full, then give back `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))


def test_a_disk_that_fills_up_mid_checkpoint_is_named_and_the_previous_checkpoint_kept(shards, small_disk, capsys,
                                                                                      stderr_logging):
    run = small_disk / "run"
    args = ["pretrain", "--shards", str(shards), *TINY, "-o", str(run)]
    assert main([*args, "--max-steps", "2"]) == 0
    fill(small_disk, leave=256 << 10)  # room for metric rows, not for a checkpoint of ~1 MB
    capsys.readouterr()
    assert main([*args, "--max-steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genpt: error: ") and "disk full" in err[-1], err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]  # no half-written one
    (small_disk / "filler").unlink()
    assert main([*args, "--max-steps", "4", "--resume"]) == 0  # the kept checkpoint resumes
    assert [r[0] for r in rows(run) if r[1] == "train"] == [1, 2, 3, 4]


