"""A run folder has one writer at a time (an OS lock a killed process releases), and its settings file is
replaced whole: a second writer is refused in one line and the first run's files stay its own."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from genpt.cli import main
from genpt.errors import GenptError
from genpt.io import LOCK_FILE, folder_lock
from genpt.train.metrics_log import read_metrics

DEAD = 2**31 - 1  # a pid above any pid_max: no such process
TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set", "model.n_ctx=16",
        "--set", "train.batch_size=2", "--set", "train.warmup_steps=1", "--set", "train.checkpoint_interval=2",
        "--set", "train.log_interval=1"]
HOLD = "import sys, time\nfrom genpt.io import folder_lock\nwith folder_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(600)\n"


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(GenptError, match=f"another genpt process \\(pid {os.getpid()}\\)"):
            with folder_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()  # released and removed
    with folder_lock(tmp_path):
        pass


def test_a_holder_killed_with_sigkill_releases_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GenptError, match=f"pid {holder.pid}"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(tmp_path):  # the kernel dropped the dead holder's lock
        pass


def test_pretrain_into_a_run_another_process_writes_is_refused_and_changes_nothing(shards, tmp_path, capsys,
                                                                                   stderr_logging):
    run = tmp_path / "run"
    args = ["pretrain", "--shards", str(shards), *TINY, "-o", str(run)]
    assert main([*args, "--max-steps", "2"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    with folder_lock(run):  # as a first `genpt pretrain` would hold it
        code = main([*args, "--max-steps", "4", "--resume"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "another genpt process" in lines[0], lines
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_resume_refused_keeps_the_runs_settings(shards, tmp_path, capsys, stderr_logging):
    run = tmp_path / "run"
    assert main(["pretrain", "--shards", str(shards), *TINY, "-o", str(run), "--max-steps", "2"]) == 0
    settings = (run / "config.json").read_text()
    assert main(["pretrain", "-o", str(run), "--resume", "--set", "model.n_embd=32"]) == 2
    assert "model.n_embd=16" in capsys.readouterr().err
    assert (run / "config.json").read_text() == settings
    assert main(["pretrain", "-o", str(run), "--resume", "--max-steps", "4"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["max_steps"] == 4
    assert [r["step"] for r in read_metrics(run) if r["split"] == "train"] == [1, 2, 3, 4]
    assert not list(run.glob(".*.tmp")) and not (run / LOCK_FILE).exists()


def test_a_kill_between_the_renames_of_a_checkpoint_swap_loses_nothing(shards, tmp_path):
    """Killed after the old checkpoint moved aside and before the new one took its place: the next run
    puts the old one back and removes the half-written one, then resumes from it."""
    run = tmp_path / "run"
    args = ["pretrain", "--shards", str(shards), *TINY, "-o", str(run)]
    assert main([*args, "--max-steps", "2"]) == 0
    checkpoints = run / "checkpoints"
    inode = (checkpoints / "step_00000002" / "model.safetensors").stat().st_ino
    (checkpoints / "step_00000002").rename(checkpoints / f".step_00000002.{DEAD}-0a1b.old")
    (checkpoints / f".step_00000002.{DEAD}-2c3d.tmp").mkdir()
    (checkpoints / f".step_00000002.{DEAD}-2c3d.tmp" / "model.safetensors").write_bytes(b"half")
    (run / f".best.{DEAD}-4e5f.tmp").mkdir()  # a fine-tuning run's leftover of the same kind
    assert main([*args, "--max-steps", "4", "--resume"]) == 0
    assert (checkpoints / "step_00000002" / "model.safetensors").stat().st_ino == inode  # the same file, put back
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000002", "step_00000004"]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_prepare_removes_what_a_killed_prepare_left_and_restores_an_output_it_moved_aside(shards, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(shards, tmp_path / f".shards.{DEAD}-abc.old")  # killed between its two renames
    (tmp_path / f".shards.{DEAD}-def.tmp").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (tmp_path / f".shards.{live.pid}-ghi.tmp").mkdir()  # a live process's: left alone
        assert main(["prepare", str(shards.parent / "part0.txt"), "-t", str(shards / "tokenizer.json"),
                     "-o", str(out), "--workers", "1"]) == 0
    finally:
        live.kill()
        live.wait()
    assert (out / "meta.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".shards.{live.pid}-ghi.tmp", "shards"]


def test_a_folder_moved_aside_by_a_killed_atomic_write_is_put_back(tmp_path):
    from genpt import io

    (tmp_path / f".best.{DEAD}-0a1b.old").mkdir()  # killed after moving best/ aside, before the new one arrived
    (tmp_path / f".best.{DEAD}-0a1b.old" / "model.safetensors").write_text("the old best")
    io.remove_leftovers(tmp_path / "best")
    assert (tmp_path / "best" / "model.safetensors").read_text() == "the old best"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_a_resumed_run_keeps_the_kernel_choices_it_recorded_in_its_folder(shards, tmp_path):
    """Measured choices live in RUN/kernels.json, which a new run's folder check and a resume accept; a choice the
    machine's cache changed since (measured again) does not reach the resumed run."""
    from genpt.kernels import select

    def first_fastest(applicable, args):
        return {name: float(i) for i, name in enumerate(applicable)}

    machine, run = tmp_path / "machine.json", tmp_path / "run"
    select.Cache(machine).put("gelu|a shape this run never meets", select.Choice("plain"))
    saved = select.use(select.Selector("measure", select.Cache(machine), first_fastest))
    try:
        assert main(["pretrain", "--shards", str(shards), *TINY, "-o", str(run), "--max-steps", "2"]) == 0
        recorded = json.loads((run / select.KERNELS_FILE).read_text())["choices"]
        assert recorded and all(c["chosen"] == next(iter(c["seconds"])) for c in recorded.values())
        assert "gelu|a shape this run never meets" not in recorded  # the file lists what the run ran, no more
        changed = {key: {**c, "chosen": list(c["seconds"])[-1]} for key, c in recorded.items()}
        machine.write_text(json.dumps({"choices": changed}))  # the machine's cache measured everything again
        select.use(select.Selector("measure", select.Cache(machine), first_fastest))  # a new process
        assert main(["pretrain", "-o", str(run), "--resume", "--max-steps", "4"]) == 0
        assert select.selector().used == {}  # the machine's selector chose nothing: every call asked the run's
        assert json.loads((run / select.KERNELS_FILE).read_text())["choices"] == recorded
    finally:
        select.use(saved)
