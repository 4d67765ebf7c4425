"""train.host_memory: a CPU training process keeps freed blocks, so a step's buffers are not faulted in again."""

import subprocess
import sys

import pytest

from genpt.config import load_pretrain_config
from genpt.errors import GenptError
from genpt.train import host_memory

# A small model's training step (its logits alone 16 x 128 x 8192 floats, 64 MiB), repeated: the page
# faults of the steps after the first, the fewest of three. One lone block freed and allocated again is
# not enough: an aligned allocation may not fit back into the hole it left, and then grows the heap.
STEPS = """
import sys, torch
from genpt.config import ModelConfig
from genpt.model import GPT
from genpt.train import host_memory
if sys.argv[1] == "keep":
    assert host_memory.keep_freed_memory()
torch.manual_seed(0)
model = GPT(ModelConfig(vocab_size=8192, n_ctx=128, n_embd=128, n_layer=2, n_head=2)).train()
ids = torch.randint(0, 8192, (16, 128))
def step():
    model(ids, labels=ids, return_logits=False).loss.backward()
    model.zero_grad(set_to_none=True)
print(min(host_memory.faults_of(step, repeats=3) for _ in range(3)))
"""


def step_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(host_memory._mallopt() is None, reason="this C library has no mallopt (not glibc)")
def test_a_step_with_memory_kept_faults_no_pages_where_one_with_malloc_as_is_faults_its_logits_in():
    logits_pages = 16 * 128 * 8192 * 4 // 4096
    assert step_faults("system") >= logits_pages // 2  # measured: 15,264-19,905 pages
    assert step_faults("keep") < logits_pages // 40  # measured: 0-2


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
