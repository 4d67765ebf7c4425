"""train.host_memory: a CPU training process keeps freed blocks, so a step's buffers are not faulted in again."""

import subprocess
import sys

import pytest

from genpt.config import load_pretrain_config
from genpt.errors import GenptError
from genpt.train import host_memory

# Allocates and fills a 64 MiB tensor (above every malloc mmap threshold) three times, and prints the page
# faults of the third: the pages a training step pays for again at every step when malloc returns them.
REFILL = """
import sys, torch
from genpt.train import host_memory
if sys.argv[1] == "keep":
    assert host_memory.keep_freed_memory()
for _ in range(3):
    before = host_memory.page_faults()
    torch.ones(16 << 20)
print(host_memory.page_faults() - before)
"""


def refill_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", REFILL, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(host_memory._mallopt() is None, reason="this C library has no mallopt (not glibc)")
def test_kept_memory_is_not_faulted_in_again_where_returned_memory_is():
    pages = (64 << 20) // 4096
    assert refill_faults("system") >= pages // 2  # every refill maps and zeroes the block afresh
    assert refill_faults("keep") < pages // 20  # the freed block is reused as it is


def test_without_mallopt_memory_is_left_to_the_system(monkeypatch):
    monkeypatch.setattr(host_memory, "_kept", False)
    monkeypatch.setattr(host_memory, "_mallopt", lambda: None)
    assert not host_memory.keep_freed_memory()


def test_only_cpu_training_asked_to_keep_touches_malloc(monkeypatch):
    asked = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: asked.append(True) or True)
    assert not host_memory.apply("system", "cpu")
    assert not host_memory.apply("keep", "cuda")
    assert asked == []
    assert host_memory.apply("keep", "cpu") and asked == [True]


def test_an_unknown_host_memory_setting_is_refused_by_name():
    with pytest.raises(GenptError, match="train.host_memory must be keep or system, got 'never'"):
        load_pretrain_config(None, ["train.host_memory=never"])
