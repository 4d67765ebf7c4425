"""Named alternatives for each fast path, tried in order; the last, the plain twin, serves every input.

Each alternative says which inputs it applies to (device, dtype, autocast, torch.compile...). Of those
that apply to a call, genpt.kernels.select runs the one measured fastest on this CPU (the plain twin
unless another beats it), and GENPT_KERNELS can force one; an alternative switched off by name
(`disable`) never runs, which is how the ablation benchmark and the parity tests reach each twin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from genpt.kernels.select import selector


@dataclass(frozen=True)
class Alternative:
    name: str
    applies: Callable[..., bool]  # takes the fast path's own arguments
    run: Callable[..., Any]


class FastPath:
    """One operation's alternatives, fastest first; the last is plain PyTorch and always applies."""

    def __init__(self, name: str, *alternatives: Alternative):
        self.name = name
        self.alternatives = list(alternatives)
        self.disabled: set[str] = set()

    @property
    def plain(self) -> Alternative:
        return self.alternatives[-1]

    def choose(self, *args: Any, **kwargs: Any) -> Alternative:
        applicable = {alt.name: alt for alt in self.alternatives[:-1]
                      if alt.name not in self.disabled and alt.applies(*args, **kwargs)}
        if not applicable:
            return self.plain
        applicable[self.plain.name] = self.plain
        runs = {name: alt.run for name, alt in applicable.items()}
        return applicable[selector().choose(self.name, runs, self.plain.name, [*args, *kwargs.values()])]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.choose(*args, **kwargs).run(*args, **kwargs)

    def names(self) -> list[str]:
        return [alt.name for alt in self.alternatives]


@contextmanager
def disabled(paths: dict[str, FastPath], *names: str) -> Iterator[None]:
    """Switch off alternatives named `path.alternative` (or a whole path's fast ones by `path`) for a block."""
    saved = {name: set(path.disabled) for name, path in paths.items()}
    try:
        for full in names:
            path_name, _, alt = full.partition(".")
            path = paths[path_name]
            path.disabled |= {alt} if alt else set(path.names()[:-1])
        yield
    finally:
        for name, path in paths.items():
            path.disabled = saved[name]


__all__ = ["Alternative", "FastPath", "disabled"]
