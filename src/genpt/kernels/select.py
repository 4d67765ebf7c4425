"""Which alternative of a fast path runs: the fastest measured on this machine, remembered per CPU.

A kernel that wins on one CPU loses on another (oneDNN's float32 linear: 2x faster than MKL on an
AMD EPYC, slower on an AVX-512 Xeon), so nothing is decided by flags. The first call of a fast path
with a new signature (its tensors' dtypes and shapes, the batch and length rounded up to a power of
two, the autocast dtype, whether gradients flow) times every alternative that applies, the
plain twin included, forward and backward on copies of the inputs, in turns, and keeps the fastest;
the plain twin keeps its place unless another beats it by `MARGIN`. The random state is restored
afterwards, so measuring changes no result. Choices are cached in
`genpt.io.cache_dir()/kernels/<CPU>-<model>-torch<version>.json` with the measured times, so each is
measured once per CPU and PyTorch version (again, in a later process, if it was measured on an
oversubscribed machine that has since quietened); `genpt doctor` prints them, `--remeasure` starts over.
Two alternatives sum in different orders, so which one ran changes a training run's last bits and, through
them, its result: a training run, and a study with all its stages, keep their choices in a file of their own
whose recorded choices are final (`recorded_in`), so a run resumed or a stage run later repeats the numbers.

GENPT_KERNELS overrides, as a comma-separated list:
  measure (the default) | first (the registry's order, nothing measured) | plain (every plain twin)
  and `path=alternative` entries that force one path (`linear=plain,lm_loss=chunked`); a forced
  alternative that does not apply to a call falls back to the plain twin.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from genpt.errors import GenptError
from genpt.io import cache_dir, write_json
from genpt.kernels.measure import cpu_identity, machine_key, median_seconds

log = logging.getLogger("genpt")

MARGIN = 1.03  # a fast path must beat the plain twin by 3% to be kept: noise on shared cores is larger
ROUNDS = 5  # timed calls of each alternative, in turns; the median is kept
BUDGET_S = 10.0  # fewer rounds where one round takes longer (GPT-1's LM loss at batch 32: seconds a call)
MODES = ("measure", "first", "plain")
KERNELS_FILE = "kernels.json"  # where a run or a study keeps the choices its calls run (`recorded_in`)


@dataclass
class Choice:
    """What runs for one signature of one path, and the times that decided it (seconds per call)."""

    chosen: str
    seconds: dict[str, float] = field(default_factory=dict)
    reason: str = "measured"
    load: float = 0.0  # the 1-minute load average per core when measured: other work skews small kernels most


def load_per_core() -> float:
    return os.getloadavg()[0] / (os.cpu_count() or 1) if hasattr(os, "getloadavg") else 0.0


def stale(choice: Choice | None) -> bool:
    """Missing, or measured on an oversubscribed machine (over 2 runnable threads a core) that has since
    quietened to half that: then the ranking of many small kernels against few large ones may turn."""
    if choice is None:
        return True
    return choice.load > 2.0 and load_per_core() < choice.load / 2


def pick(seconds: dict[str, float], plain: str, margin: float = MARGIN) -> str:
    """The fastest alternative, unless it does not beat `plain` (when measured) by `margin`."""
    best = min(seconds, key=seconds.__getitem__)
    if plain in seconds and best != plain and seconds[best] * margin > seconds[plain]:
        return plain
    return best


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    """GENPT_KERNELS's mode and forced `path=alternative` pairs."""
    mode, forced = "measure", {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" in item:
            path, _, alt = item.partition("=")
            forced[path.strip()] = alt.strip()
        elif item in MODES:
            mode = item
        else:
            raise GenptError(f"GENPT_KERNELS: {item!r} is neither one of {', '.join(MODES)} nor path=alternative")
    return mode, forced


def _bucket(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def signature(args: Sequence[Any]) -> str:
    """The key of a call: each tensor's dtype, gradient flag and shape (for activations, of 3 dimensions or
    more, all but the last rounded up to a power of two, and for integer tensors such as labels every
    dimension, so one measurement serves every batch and length near it; weights exact), other arguments
    as they are, the autocast dtype and whether gradients flow."""
    parts = []
    for a in args:
        if isinstance(a, torch.Tensor):
            if not (a.is_floating_point() or a.is_complex()):
                dims = [_bucket(d) for d in a.shape]
            elif a.dim() >= 3:
                dims = [*(_bucket(d) for d in a.shape[:-1]), *a.shape[-1:]]
            else:
                dims = list(a.shape)
            parts.append(f"{str(a.dtype).removeprefix('torch.')}{'g' if a.requires_grad else ''}"
                         f"[{'x'.join(map(str, dims))}]")
        else:
            parts.append(repr(a))
    amp = f"autocast={str(torch.get_autocast_dtype('cpu')).removeprefix('torch.')}" \
        if torch.is_autocast_enabled("cpu") else "autocast=off"
    return ",".join([*parts, amp, "grad" if torch.is_grad_enabled() else "nograd"])


def _copies(args: Sequence[Any]) -> list[Any]:
    """The arguments with every tensor a fresh leaf (gradients flow to it where they flowed to the original)."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            c = a.detach().clone()
            out.append(c.requires_grad_(a.requires_grad and torch.is_grad_enabled()))
        else:
            out.append(a)
    return out


def time_call(run: Callable[..., Any], args: Sequence[Any]) -> Callable[[], None]:
    """A closure that runs `run(*args)` on copies of the inputs, and its backward where gradients flow."""
    inputs = _copies(args)
    leaves = [a for a in inputs if isinstance(a, torch.Tensor) and a.requires_grad]

    def call() -> None:
        out = run(*inputs)
        if leaves and isinstance(out, torch.Tensor) and out.requires_grad:
            out.backward(torch.ones_like(out))
            for leaf in leaves:
                leaf.grad = None

    return call


def measure(alternatives: dict[str, Callable[..., Any]], args: Sequence[Any], rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds of each alternative on `args`, timed in turns after one warm-up call each (`rounds`
    rounds, fewer where they would take over BUDGET_S).

    The CPU random state is restored afterwards: dropout alternatives draw masks while timed."""
    with torch.random.fork_rng(devices=[]):
        calls = {name: time_call(run, args) for name, run in alternatives.items()}
        start = time.perf_counter()
        for call in calls.values():
            call()
        rounds = max(1, min(rounds, int(BUDGET_S / (time.perf_counter() - start))))
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                times[name].append(median_seconds(call, repeats=1, warmup=0))
    return {name: statistics.median(t) for name, t in times.items()}


class Cache:
    """Choices by `path|signature`, in memory and in one JSON file per CPU and PyTorch version.

    Processes sharing the file (a study's workers, tests beside a run) merge into it under a lock: what one
    recorded is never lost to another's write. A key the file lacks is taken from `seed`'s file where that has
    it (a run's choices begin as the machine's) and recorded, so the file lists exactly the choices its run
    asked for; a choice measured here is recorded in the seed too, so the machine measures each call once for
    all the runs after."""

    def __init__(self, file: Path | None = None, seed: Path | None = None):
        self.file = file
        self.choices: dict[str, Choice] = {}
        self._loaded = False
        self._seed = Cache(seed) if seed is not None else None
        self._unwritable = False  # said once: a run folder that cannot be written would say it per choice

    def _read(self, file: Path) -> dict[str, Choice]:
        try:
            return {key: Choice(**value) for key, value in json.loads(file.read_text())["choices"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged cache is measured again
            log.warning("%s: unreadable kernel choices (%s); measuring again", file, e)
            return {}

    def _load(self) -> None:
        self._loaded = True
        if self.file is not None:
            self.choices.update(self._read(self.file) | self.choices)

    def get(self, key: str) -> Choice | None:
        if not self._loaded:
            self._load()
        if key not in self.choices and self._seed is not None:
            seeded = self._seed.get(key)
            if seeded is not None:  # another process may have recorded the key since: its choice stands
                return self._record(key, seeded, replace=False)
        return self.choices.get(key)

    def put(self, key: str, choice: Choice, replace: bool = True) -> Choice:
        """Record `choice` for `key` (with `replace=False`, only where no process has recorded one), and in the
        seed where it stands here; return the choice that stands."""
        standing = self._record(key, choice, replace)
        if self._seed is not None and standing is choice:
            self._seed.put(key, choice, replace)
        return standing

    def _record(self, key: str, choice: Choice, replace: bool) -> Choice:
        if not self._loaded:
            self._load()

        def record() -> None:
            if replace or key not in self.choices:
                self.choices[key] = choice

        if self.file is None:
            record()
            return self.choices[key]
        try:
            with self._locked():
                self.choices.update(self._read(self.file))  # what other processes recorded since
                record()
                self._write(self.choices)
        except OSError as e:  # a read-only cache costs a measurement per process, nothing else
            if not self._unwritable:
                log.warning("%s: cannot save kernel choices (%s); keeping them in memory", self.file, e)
                self._unwritable = True
            record()
        return self.choices[key]

    def _locked(self):
        """An exclusive lock on a file beside the cache, held for the block (other processes wait)."""
        assert self.file is not None
        self.file.parent.mkdir(parents=True, exist_ok=True)
        return _FileLock(self.file.with_name(self.file.name + ".lock"))

    def _write(self, choices: dict[str, Choice]) -> None:
        assert self.file is not None
        write_json(self.file, {"machine": cpu_identity(), "torch": torch.__version__,
                               "choices": {k: asdict(v) for k, v in sorted(choices.items())}})

    def forget(self) -> None:
        """Drop every choice, here and in the file: the next calls measure again (a quieter machine, new kernels)."""
        self.choices, self._seed, self._loaded = {}, None, True
        if self.file is not None:
            self.file.unlink(missing_ok=True)


class _FileLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock


def default_cache_file() -> Path:
    return cache_dir() / "kernels" / f"{machine_key()}.json"


class Selector:
    """Picks, for a fast path's call, one of the alternatives that apply (the plain twin always does)."""

    def __init__(self, setting: str | None = None, cache: Cache | None = None,
                 timer: Callable[[dict[str, Callable[..., Any]], Sequence[Any]], dict[str, float]] = measure,
                 final: bool = False):
        self.mode, self.forced = parse_setting(os.environ.get("GENPT_KERNELS", "") if setting is None else setting)
        self.cache = cache if cache is not None else Cache(default_cache_file())
        self.timer = timer
        # `final`: a recorded choice is never measured again for having been measured on a busier machine, and
        # the first process to record one wins: every call of a signature runs the same kernel, whenever it runs.
        self.final = final
        self.used: dict[str, Choice] = {}  # what each signature met in this process ran, for `genpt doctor`
        self._seen: dict[tuple, str] = {}

    def forget(self, cache: bool = True) -> None:
        """Forget what this process's calls chose (and, with `cache`, every stored choice): they choose again."""
        self.used.clear()
        self._seen.clear()
        if cache:
            self.cache.forget()

    def choose(self, path: str, applicable: dict[str, Callable[..., Any]], plain: str, args: Sequence[Any]) -> str:
        """The name of the alternative to run. `applicable` holds every alternative that applies to `args`,
        in the registry's order, the plain twin (`plain`) last."""
        if torch.compiler.is_compiling():
            return next(iter(applicable))  # nothing to time while tracing; the fast paths step aside themselves
        # A call seen before in this process is answered from a tuple (cheaper than the signature's string).
        seen = (path, tuple(applicable), torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"),
                torch.get_autocast_dtype("cpu"),
                *((tuple(a.shape), a.dtype, a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args))
        if seen in self._seen:
            return self._seen[seen]
        key = f"{path}|{signature(args)}"
        if path in self.forced:
            choice = Choice(self.forced[path] if self.forced[path] in applicable else plain,
                            reason="forced by GENPT_KERNELS")
        elif self.mode != "measure" or len(applicable) == 1:
            choice = Choice(plain if self.mode == "plain" else next(iter(applicable)),
                            reason=f"GENPT_KERNELS={self.mode}" if self.mode != "measure" else "only one applies")
        else:
            choice = self.cache.get(key)
            usable = choice is not None and choice.chosen in applicable and set(applicable) <= set(choice.seconds)
            if not usable or (stale(choice) and not self.final):
                seconds = self.timer(applicable, args)
                measured = Choice(pick(seconds, plain), seconds, load=load_per_core())
                choice = self.cache.put(key, measured, replace=not (self.final and choice is None))
                log.info("kernels: %s %s -> %s (%s)%s", path, key.partition("|")[2], choice.chosen,
                         ", ".join(f"{n} {s * 1e3:.2f} ms" for n, s in seconds.items()),
                         "" if choice is measured else "; another process recorded it first")
        if key not in self.used:
            self.used[key] = choice
        self._seen[seen] = choice.chosen
        return choice.chosen


_selector: Selector | None = None


def selector() -> Selector:
    """The process's selector, made on first use from GENPT_KERNELS and the cache folder."""
    global _selector
    if _selector is None:
        _selector = Selector()
    return _selector


def use(new: Selector | None) -> Selector | None:
    """Install `new` as the process's selector (None: make one from GENPT_KERNELS on next use); returns the old."""
    global _selector
    old, _selector = _selector, new
    return old


@contextmanager
def recorded_in(file: Path) -> Iterator[None]:
    """Inside the block every call runs the choice recorded in `file`, final once recorded: a run and its
    resumption, or every stage of a study, run the same kernel for the same call whatever the load since.

    A call the file has no choice for takes the one in use's (the machine's) where it has one, else is measured;
    either way the file records it, and the selector keeps the one in use's setting and timer. Inside an outer
    such block (a study's stage is a run) the outer file holds."""
    current = selector()
    if current.final:
        yield
        return
    kept = Selector(cache=Cache(file, seed=current.cache.file), timer=current.timer, final=True)
    kept.mode, kept.forced = current.mode, dict(current.forced)
    saved = use(kept)
    try:
        yield
    finally:
        use(saved)


__all__ = ["KERNELS_FILE", "MARGIN", "Cache", "Choice", "Selector", "measure", "parse_setting", "pick",
           "recorded_in", "selector", "signature", "use"]
