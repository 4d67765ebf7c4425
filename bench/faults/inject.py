"""Run `genpt ARGS` in a process that sends itself SIGNAL at the Nth occurrence of EVENT.

    python bench/faults/inject.py SIGNAL EVENT N COUNTS -- ARGS...

EVENT is where the signal lands:
  step        the Nth backward pass (inside an optimizer step, after its forward pass)
  checkpoint  right after the Nth weights file is written (a checkpoint folder half written)
  eval        the Nth time a model is put into evaluation mode (an evaluation starting)
N = 0 sends nothing and only counts. The counts of all three events are written to COUNTS (JSON) when
the command returns, if the process lives that long. The hooks wrap PyTorch and safetensors, not genpt,
so they hold whatever genpt's modules are called.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import safetensors.torch
import torch

EVENTS = ("step", "checkpoint", "eval")


def run(signal_name: str, event: str, n: int, counts_path: str, args: list[str]) -> int:
    """`genpt ARGS` with the hooks installed in this process; its exit code."""
    if event not in EVENTS:
        raise ValueError(f"event must be one of {EVENTS}, got {event!r}")
    counts = dict.fromkeys(EVENTS, 0)

    def hit(what: str) -> None:
        counts[what] += 1
        if what == event and counts[what] == n:
            os.kill(os.getpid(), getattr(signal, signal_name))

    backward, serialize, evaluate = torch.Tensor.backward, safetensors.torch.serialize_file, torch.nn.Module.eval

    def backward_hook(self, *a, **k):
        hit("step")
        return backward(self, *a, **k)

    def serialize_hook(*a, **k):  # what safetensors.torch.save_file calls, however genpt imported save_file
        result = serialize(*a, **k)
        hit("checkpoint")
        return result

    def eval_hook(self):
        hit("eval")
        return evaluate(self)

    torch.Tensor.backward = backward_hook
    safetensors.torch.serialize_file = serialize_hook
    torch.nn.Module.eval = eval_hook
    from genpt.cli import main as genpt

    try:
        return genpt(args)
    finally:
        with open(counts_path, "w") as f:
            json.dump(counts, f)


if __name__ == "__main__":
    if len(sys.argv) < 6 or sys.argv[5] != "--":
        raise SystemExit(__doc__)
    sys.exit(run(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[6:]))
