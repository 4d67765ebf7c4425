"""Training on several processes: torchrun's environment, the process group, DDP or FSDP2, rank-0 I/O.

`torchrun --nproc_per_node N -m genpt pretrain ...` starts N copies of the command; each finds its rank
in the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...). A plain
`genpt pretrain` sees none of it and every function here falls back to the single-process case, so the
loop has one code path. Results do not depend on the world size: the loop gives rank r a contiguous
slice of each global batch (see `batch_plan`) and evaluations are split by whole batches and gathered
back in order (`map_in_order`), so 1, 2 or 8 processes compute the same numbers.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from genpt.checkpoint import is_sharded
from genpt.errors import GenptError
from genpt.model import Block

# Imported before any process group exists, not (as DDP would) inside a job: its functions take
# `group=group.WORLD` as a default, evaluated at import, which would keep the group alive after
# destroy_process_group. Its gloo threads would then be torn down at interpreter exit, which now and then
# aborts the process ("terminate called without an active exception") after a run that succeeded.
# FSDP's mesh can do the same: see release_group_references.
if dist.is_available():  # builds without torch.distributed have no groups to keep alive
    import torch.distributed.nn.functional  # noqa: F401

log = logging.getLogger("genpt")
T = TypeVar("T")
STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class Env:
    """This process's place in the job; rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def restarted() -> bool:
    """A worker group that torchrun (`--max-restarts N`) started again after a failure: it continues the run."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def current() -> Env:
    if not (dist.is_available() and dist.is_initialized()):
        return Env()
    return Env(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def active() -> bool:
    """Whether collectives are in use (a process group is up, even of one process)."""
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """Rank 0, or a plain process; readable before and after the process group exists (for the CLI)."""
    return current().is_main if active() else os.environ.get("RANK", "0") == "0"


def resolve_device(name: str, env: Env) -> torch.device:
    """`auto` and `cuda` mean this process's GPU (cuda:LOCAL_RANK) under torchrun."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", env.local_rank)
    if name == "auto":
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GenptError(f"train.device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenptError(f"train.device is {name!r} but no CUDA device is available")
    if device.type == "cuda" and env.world_size > 1:
        raise GenptError(f"train.device is {name!r}, one GPU for all {env.world_size} processes; use auto or "
                         "cuda, which give each process the GPU of its LOCAL_RANK")
    return device


@contextmanager
def process_group(device: str, timeout_s: float) -> Iterator[Env]:
    """Join torchrun's job for the duration of a stage; a no-op in a plain process or when already joined.

    NCCL on GPUs, gloo on the CPU. `timeout_s` bounds every collective, so a rank that dies or hangs
    stops the others with an error instead of leaving them waiting forever.
    """
    if not launched_by_torchrun() or active():
        yield current()
        return
    env = Env(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    target = resolve_device(device, env)
    timeout = datetime.timedelta(seconds=timeout_s)
    # After torchrun restarts a failed group, the rendezvous store still holds the old group's addresses
    # under the same keys (gloo then dials the dead worker: "connectFullMesh failed"); a prefix per
    # restart gives the new group keys of its own.
    store = _restart_store(env, timeout) if restarted() else None
    if target.type == "cuda":
        torch.cuda.set_device(target)
        dist.init_process_group("nccl", timeout=timeout, device_id=target, store=store,
                                **({"rank": env.rank, "world_size": env.world_size} if store else {}))
    else:
        dist.init_process_group("gloo", timeout=timeout, store=store,
                                **({"rank": env.rank, "world_size": env.world_size} if store else {}))
    level = log.level
    if not env.is_main:
        log.setLevel(logging.WARNING)  # only rank 0 reports progress; warnings and errors still show
    broken = False
    try:
        yield env
        dist.barrier()  # leave together: no rank tears the group down while a peer still talks to it
    except BaseException as e:
        broken = is_comm_failure(e)
        raise
    finally:
        log.setLevel(level)
        if not broken:  # tearing down a group whose peer is gone can block; the process is exiting anyway
            release_group_references()
            dist.destroy_process_group()


def _restart_store(env: Env, timeout: datetime.timedelta) -> dist.Store:
    """The rendezvous store under a prefix of this restart's own (see process_group)."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # else rank 0 hosts it, as env:// does
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env.world_size,
                         is_master=env.is_main and not agent, timeout=timeout)
    return dist.PrefixStore(f"genpt-restart-{os.environ['TORCHELASTIC_RESTART_COUNT']}", base)


def release_group_references() -> None:
    """Drop what would keep the process group alive after destroy_process_group.

    A group that outlives it keeps its gloo threads, and tearing those down at interpreter exit now and
    then aborts a process that has finished its work (see the import above). FSDP's modules sit in
    reference cycles until the next collection, and DTensor's caches hold its device mesh in their keys.
    """
    from torch.distributed.tensor import _collective_utils, _redistribute, debug

    # Private to torch (2.13 has all four); a version without one has nothing there to clear.
    caches = ((debug, "_clear_sharding_prop_cache"),
              (getattr(_redistribute, "_gen_transform_infos", None), "cache_clear"),
              (_redistribute, "clear_redistribute_planner_cache"),
              (getattr(_collective_utils.MeshTopoInfo, "build_from_mesh", None), "cache_clear"))
    for owner, name in caches:
        clear = getattr(owner, name, None)
        if clear is not None:
            clear()
    gc.collect()


def is_comm_failure(e: BaseException) -> bool:
    """An error from a collective: a peer that died, or one that did not answer within the timeout."""
    if isinstance(e, GenptError) and isinstance(e.__cause__, BaseException):
        return is_comm_failure(e.__cause__)
    if isinstance(e, dist.DistError):
        return True
    text = str(e)
    markers = ("gloo/transport", "Connection closed by peer", "Connection reset by peer", "Timed out waiting",
               "NCCL", "ProcessGroup")
    return isinstance(e, RuntimeError) and any(m in text for m in markers)


def lost_contact(e: BaseException, env: Env, timeout_s: float, last_checkpoint: Path | None) -> GenptError:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = f"the last complete checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
    return GenptError(
        f"rank {env.rank} of {env.world_size}: lost contact with another process (it died, or did not answer "
        f"within collective_timeout={timeout_s:g} s): {first_line}; {where}; continue with --resume"
    )


def batch_plan(batch_size: int, micro_batch_size: int, world_size: int, section: str = "train") -> tuple[int, int]:
    """(sequences per forward pass, forward passes per rank per optimizer step).

    The global batch `batch_size` is fixed whatever the world size; `micro_batch_size` 0 means one pass
    per rank (batch_size / world_size sequences each).
    """
    micro = micro_batch_size or batch_size // world_size
    if micro < 1 or batch_size % (micro * world_size):
        raise GenptError(
            f"{section}.batch_size ({batch_size}) must be a multiple of {section}.micro_batch_size ({micro}) "
            f"times the number of processes ({world_size})"
        )
    return micro, batch_size // (micro * world_size)


def checkpoint_blocks(model: nn.Module) -> None:
    """Recompute each Transformer block's activations in the backward pass instead of keeping them.

    The block's forward is replaced on the instance, so parameter names (and checkpoints) do not change.
    """
    from torch.utils.checkpoint import checkpoint

    for block in (m for m in model.modules() if isinstance(m, Block)):
        inner = block.forward

        def forward(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward


def wrap(model: nn.Module, device: torch.device, strategy: str, *, bf16: bool) -> nn.Module:
    """The model as the loop drives it: as is in a plain process, else in DDP or sharded with FSDP2.

    FSDP2 shards each block and then the rest (embeddings, tied head, task head) at the root; with
    bfloat16 it computes in bfloat16 and reduces gradients in float32.
    """
    if not active():
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy != "fsdp":
        raise GenptError(f"train.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # Each block also returns its key/value views (the KV cache); nothing changes them in place, which is
    # what FSDP2 warns about once per block class.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else (
        MixedPrecisionPolicy())
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def gradient_sync(model: nn.Module, enabled: bool):
    """A context for one micro-step's backward: skip the gradient all-reduce unless this one steps."""
    inner = getattr(model, "_orig_mod", model)
    if enabled:
        if is_sharded(inner):
            inner.set_requires_gradient_sync(True)
        return nullcontext()
    if hasattr(inner, "no_sync"):  # DDP
        return inner.no_sync()
    if is_sharded(inner):
        inner.set_requires_gradient_sync(False)
    return nullcontext()


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip to `max_norm` by the norm over all ranks' gradients (shards included); returns that norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = nn.utils.get_total_norm(grads, norm_type=2.0)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP: the partial norms summed over ranks
        norm = norm.full_tensor()
    nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over all ranks (float64, so that token counts stay exact)."""
    if not active():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast(obj: T) -> T:
    """Rank 0's `obj`, on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def first_on_each_node(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0 first, then on the first process of every other node, then on the rest.

    For steps that fill a cache on disk (converting a released model, say): one process writes it and
    the others, waiting their turn, find it there, whether or not the nodes share the cache folder.
    """
    env = current()
    if env.world_size == 1:
        return fn()
    result = None
    for turn in (env.rank == 0, env.rank != 0 and env.local_rank == 0, env.local_rank != 0):
        if turn:
            result = fn()
        barrier()
    return result


def map_in_order(fn: Callable[[int], T], count: int, model: nn.Module | None = None) -> list[T]:
    """`[fn(i) for i in range(count)]`, computed by rank i % world_size and returned to every rank.

    Each item is computed exactly as one process would compute it (a whole evaluation batch, say), so
    the result does not depend on the world size, and no item is dropped or counted twice when `count`
    does not divide by it. Under FSDP every forward pass is a collective, so ranks with one item fewer
    make a throwaway pass on item 0 to keep in step (pass `model` for that).
    """
    env = current()
    if env.world_size == 1:
        return [fn(i) for i in range(count)]
    mine = {i: fn(i) for i in range(env.rank, count, env.world_size)}
    if model is not None and is_sharded(model) and count > 0:
        for _ in range(len(range(env.rank, count, env.world_size)), -(-count // env.world_size)):
            fn(0)
    parts: list[dict[int, T]] = [{} for _ in range(env.world_size)]
    dist.all_gather_object(parts, mine)
    merged = {i: v for part in parts for i, v in part.items()}
    return [merged[i] for i in range(count)]


__all__ = [
    "Env", "STRATEGIES", "active", "all_sum", "barrier", "batch_plan", "broadcast", "checkpoint_blocks",
    "clip_gradients", "current", "first_on_each_node", "gradient_sync", "is_comm_failure",
    "is_main_process", "launched_by_torchrun", "lost_contact", "map_in_order",
    "process_group", "resolve_device", "restarted", "wrap",
]
