"""Small element-wise functions compiled by Inductor on first use, and whether they compile here at all.

Some CPU work is a chain of element-wise PyTorch ops, each another pass over memory (GPT-1's tanh GELU,
the loss's softmax and its gradient); Inductor fuses such a chain into one vectorised loop. The
compiled function takes one symbolic size per dimension (`dynamic=True`), so a new length does not
compile again; it is made on first use, not at import, which would load torch._dynamo into every
process. Where Inductor cannot compile (no C++ compiler, an unsupported platform) the caller's eager
twin answers and the loop is not tried again in that process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch

log = logging.getLogger("genpt")

_ready: dict[tuple[str, torch.dtype], bool] = {}


@functools.cache
def compiled(fn: Callable[..., object]) -> Callable[..., object]:
    """`fn` compiled by Inductor with symbolic sizes; one compiled function per `fn` in a process."""
    return torch.compile(fn, dynamic=True)


def works(name: str, dtype: torch.dtype, trial: Callable[[], object]) -> bool:
    """Whether loop `name` compiles and runs for `dtype`: `trial()` (which calls it on a small input) is run
    once per process, outside autocast and autograd, when the loop is first wanted."""
    key = (name, dtype)
    if key not in _ready:
        try:
            with torch.autocast("cpu", enabled=False), torch.no_grad():
                trial()
            _ready[key] = True
        except Exception as e:  # noqa: BLE001 - no compiler, an unsupported platform: Inductor raises many kinds
            log.info("compiled %s unavailable for %s (%s: %s); PyTorch's ops serve", name, dtype, type(e).__name__, e)
            _ready[key] = False
    return _ready[key]


def failed(name: str, dtype: torch.dtype) -> bool:
    """Whether loop `name` was tried for `dtype` and did not compile (untried counts as not failed)."""
    return _ready.get((name, dtype)) is False


__all__ = ["compiled", "failed", "works"]
