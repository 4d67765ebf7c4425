"""Checkpoints: the on-disk format, its one typed reader, atomic writing, retention and sharded state.

A checkpoint is a folder `checkpoints/step_00001000/` (or a run's `best/`, or a converted model) holding
`model.safetensors` (no tied LM head), `config.json` (the model's shape, the tokenizer's identity and, for
a fine-tuned model, its task and head), `state.json` (step, tokens seen, RNG states), `optimizer.pt` and
`tokenizer.json`, and `manifest.json`, written last, with each file's size and SHA-256. It is written under
a temporary name, every file flushed, and renamed when complete, so a run killed mid-write never leaves a
folder that `latest_checkpoint` would pick up; the manifest catches what goes wrong after (a torn write, a
bad sector), and `--resume` then takes the newest intact checkpoint.

Under FSDP the model and optimizer are sharded over the ranks; `full_state` gathers them into this
single-process format and `load_optimizer` scatters it back, so any world size can resume any checkpoint.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from genpt import architectures, io
from genpt.config import ModelConfig, from_dict
from genpt.data.tasks import TaskSpec
from genpt.errors import GenptError
from genpt.lstm import LSTMLM
from genpt.model import GPT, GPTForTask
from genpt.pickles import load_tensors

log = logging.getLogger("genpt")

CHECKPOINTS = "checkpoints"
BEST = "best"  # fine-tuning keeps the checkpoint of the best epoch here
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"  # each file's size and SHA-256, written last
_STEP_DIR = re.compile(r"^step_(\d{8})$")
TIED = "lm_head.weight"  # tied to tokens_embed.weight: stored once, under that name


# -- what a checkpoint is -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerInfo:
    """The identity of the tokenizer a checkpoint was trained with (its file sits beside it)."""

    fingerprint: str | None = None
    vocab_size: int | None = None
    kind: str | None = None  # set by conversions: "bpe", "gpt1-release" or "gpt1-transformers"


@dataclass(frozen=True)
class Head:
    """A fine-tuned model's task head: outputs, the length examples were cut to, its dropout."""

    n_out: int
    max_len: int
    clf_pdrop: float = 0.1


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint's `config.json`, typed: the model's shape, tokenizer, and a fine-tuned model's task."""

    model: ModelConfig
    tokenizer: TokenizerInfo
    task: TaskSpec | None = None
    head: Head | None = None
    converted_from: str | None = None

    @property
    def finetuned(self) -> bool:
        return self.task is not None


def read_info(checkpoint: str | Path) -> CheckpointInfo:
    """The typed content of a checkpoint folder's `config.json`; a bad file is a GenptError naming it."""
    path = Path(checkpoint) / CONFIG
    data = io.read_json(path, "a genpt checkpoint holds config.json")
    if not isinstance(data, dict):
        raise GenptError(f"{path}: expected a JSON object with a \"model\" section")
    try:
        model = from_dict(ModelConfig, data.get("model", data), "model.")
        model.validate()
        tokenizer = TokenizerInfo(**data.get("tokenizer", {}))
        task = head = None
        if "task" in data:
            task = TaskSpec.from_dict(data["task"])
            head = Head(**data["head"])
    except GenptError as e:
        raise GenptError(f"{path}: {e}") from None
    except (TypeError, KeyError) as e:
        raise GenptError(f"{path}: a tokenizer, task or head section is incomplete or has unknown keys ({e})") \
            from None
    return CheckpointInfo(model, tokenizer, task, head, data.get("converted_from"))


def build_model(info: CheckpointInfo) -> GPT | LSTMLM | GPTForTask:
    """A freshly initialised model of the shape `info` describes (a GPTForTask for a fine-tuned one)."""
    if info.task is None or info.head is None:
        return architectures.build_model(info.model)
    return GPTForTask(info.model, info.task.transform, info.head.n_out, info.head.clf_pdrop,
                      architectures.build_model(info.model))


# -- finding checkpoints --------------------------------------------------------------------------------


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def latest_intact(run_dir: Path, report: bool = True) -> Path | None:
    """The newest checkpoint whose files match their manifest; each damaged newer one is reported by name
    (where `report`: a stage checks before the loop looks again).

    None when there is no checkpoint; a GenptError when there are some and none is intact.
    """
    damaged = []
    for checkpoint in reversed(checkpoint_dirs(run_dir)):
        try:
            verify(checkpoint)
            read_state(checkpoint)
        except GenptError as e:
            damaged.append(str(e))
            continue
        for reason in damaged if report else ():
            log.warning("%s; skipped, resuming from %s, the newest intact checkpoint", reason, checkpoint)
        return checkpoint
    if damaged:
        raise GenptError(f"{run_dir}: no intact checkpoint to resume from; the newest: {damaged[0]}")
    return None


def verify(checkpoint: Path, names: tuple[str, ...] | None = None) -> None:
    """Check the files of `checkpoint` (or only `names`) against its manifest: a damaged one is named.

    Checkpoints written before manifests existed have none and are taken as they are.
    """
    checkpoint = Path(checkpoint)
    if not (checkpoint / MANIFEST).exists():
        return
    manifest = io.read_json(checkpoint / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise GenptError(f"{checkpoint / MANIFEST}: damaged (no \"files\" table); the checkpoint cannot be verified")
    for name in names if names is not None else files:
        if name not in files:
            continue
        expected, target = files[name], checkpoint / name
        if not target.is_file():
            raise GenptError(f"{target}: missing; the checkpoint is damaged")
        size = target.stat().st_size
        if size != expected.get("bytes"):
            raise GenptError(f"{target}: {size} bytes, its manifest says {expected.get('bytes')}; the checkpoint is "
                             "damaged (truncated or overwritten)")
        if _sha256(target) != expected.get("sha256"):
            raise GenptError(f"{target}: contents differ from its manifest (SHA-256); the checkpoint is damaged")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder: its best checkpoint if it keeps one, else its newest."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    if (path / BEST / WEIGHTS).is_file():
        return path / BEST
    if not path.exists():
        raise GenptError(f"{path}: no such run or checkpoint folder")
    found = latest_checkpoint(path)
    if found is None:
        raise GenptError(f"{path}: holds no checkpoint (expected {CHECKPOINTS}/step_NNNNNNNN/{WEIGHTS})")
    return found


# -- writing --------------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module | _Snapshot,
    optimizer: torch.optim.Optimizer | _Snapshot | None,
    state: dict[str, Any],
    *,
    config: dict[str, Any],
    tokenizer_json: Path | None = None,
    keep: int = 3,
) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep` checkpoints.

    The tokenizer is copied in, so that every checkpoint can be used alone.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    remove_leftovers(run_dir)
    final = root / f"step_{step:08d}"
    write_checkpoint(final, model, optimizer, {"step": step, **state}, config=config, tokenizer_json=tokenizer_json)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_checkpoint(
    final: Path,
    model: nn.Module | _Snapshot,
    optimizer: torch.optim.Optimizer | _Snapshot | None,
    state: dict[str, Any],
    *,
    config: dict[str, Any],
    tokenizer_json: Path | None = None,
) -> None:
    """Write one checkpoint folder whole or not at all, its manifest last; the same checkpoint saved again is
    swapped whole. On a full disk the previous checkpoints stay and the error says so."""
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not _tied(k)}
    io.remove_leftovers(final)  # of a process killed while writing it (best/, say)
    try:
        with io.atomic_dir(final) as tmp:
            save_file(weights, tmp / WEIGHTS, metadata={"format": "pt", "step": str(state.get("step"))})
            io.write_json(tmp / CONFIG, config)
            io.write_json(tmp / "state.json", {**state, "rng": _rng_state()})
            if tokenizer_json is not None:
                shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
            if optimizer is not None:
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
            io.write_json(tmp / MANIFEST, {"files": files})
    except (OSError, RuntimeError, SafetensorError) as e:
        if _disk_full(e, final.parent):
            raise GenptError(f"{final}: disk full while writing this checkpoint; the previous checkpoints are "
                             "kept; free some space and continue with --resume") from None
        raise


def remove_leftovers(run_dir: Path) -> None:
    """What writers of `run_dir`'s checkpoints killed midway left (see io.remove_leftovers: a checkpoint
    moved aside and not yet replaced is put back). Only while holding the run folder's lock."""
    run_dir = Path(run_dir)
    names = {p.name.split(".")[1] for p in (run_dir / CHECKPOINTS).glob(".step_*.*")}
    for name in sorted(names):
        io.remove_leftovers(run_dir / CHECKPOINTS / name)
    io.remove_leftovers(run_dir / BEST)


def _disk_full(e: BaseException, folder: Path) -> bool:
    """ENOSPC, or what torch.save says instead ("enforce fail at inline_container.cc") when the disk is full."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _tied(key: str) -> bool:
    return key == TIED or key.endswith("." + TIED)


def _rng_state() -> dict[str, Any]:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


# -- reading --------------------------------------------------------------------------------------------


def restore_rng(state: dict[str, Any]) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])


def read_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / "state.json"
    verify(checkpoint, (path.name,))
    state = io.read_json(path, "not a complete genpt checkpoint")
    if not isinstance(state, dict) or not {"step", "rng"} <= state.keys():
        raise GenptError(f"{path}: not a genpt checkpoint state (expected step and rng)")
    return state


def load_weights(model: nn.Module, checkpoint: Path) -> None:
    """Load `model.safetensors` into `model`, naming the file and tensor when shapes disagree."""
    path = Path(checkpoint) / WEIGHTS
    verify(checkpoint, (WEIGHTS,))
    try:
        weights = load_file(path)
    except FileNotFoundError:
        raise GenptError(f"{path}: missing; not a complete genpt checkpoint") from None
    except (SafetensorError, OSError) as e:
        raise GenptError(f"{path}: not a readable safetensors file ({e})") from None
    expected = {k: v for k, v in model.state_dict().items() if not _tied(k)}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise GenptError(f"{path}: tensors do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in weights.items():
        if v.shape != expected[k].shape:
            raise GenptError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    check_finite(weights, path)
    model.load_state_dict(weights, strict=False)


def check_finite(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Weights holding NaN or inf give NaN losses and scores: refuse them by file and tensor."""
    for k, v in weights.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise GenptError(f"{path}: tensor {k} holds NaN or infinite values; the weights are unusable "
                             "(resume from an earlier checkpoint)")


def check_resumable(checkpoint: Path, model_settings: dict[str, Any]) -> None:
    """Read and check everything `--resume` will load, before the run folder is touched."""
    checkpoint = Path(checkpoint)
    verify(checkpoint)
    saved = read_info(checkpoint).model
    changed = sorted(k for k in model_settings if hasattr(saved, k) and getattr(saved, k) != model_settings[k])
    if changed:
        raise GenptError(f"{checkpoint}: was trained with " + ", ".join(f"model.{k}={getattr(saved, k)!r}"
                                                                        for k in changed)
                         + "; a resumed run keeps its model's shape (drop the --set, or start a new run)")
    read_state(checkpoint)
    path = checkpoint / WEIGHTS
    try:
        check_finite(load_file(path), path)
    except FileNotFoundError:
        raise GenptError(f"{path}: missing; not a complete genpt checkpoint") from None
    except (SafetensorError, OSError) as e:
        raise GenptError(f"{path}: not a readable safetensors file ({e})") from None
    if (checkpoint / "optimizer.pt").exists():
        load_tensors(checkpoint / "optimizer.pt")


def load_optimizer(optimizer: torch.optim.Optimizer, checkpoint: Path, model: nn.Module | None = None) -> None:
    """Load `optimizer.pt` into an optimizer over a plain or DDP model, or over `model` sharded with FSDP."""
    path = Path(checkpoint) / "optimizer.pt"
    verify(checkpoint, (path.name,))
    try:
        numbered = load_tensors(path)
    except FileNotFoundError:
        raise GenptError(f"{path}: missing; cannot resume the optimizer") from None
    if model is not None and is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, _named(numbered, model, optimizer),
                                 options=StateDictOptions(full_state_dict=True))
        return
    try:
        optimizer.load_state_dict(numbered)
    except (ValueError, KeyError) as e:  # groups or shapes of another optimizer (train.optimizer changed?)
        raise GenptError(f"{path}: does not fit this run's optimizer ({e})") from None


# -- sharded (FSDP) state -------------------------------------------------------------------------------


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` (or the module torch.compile wraps) is sharded with FSDP2."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(model, "_orig_mod", model), FSDPModule)


class _Snapshot:
    """A gathered state dict standing in for a model or optimizer where the checkpoint writer wants one."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[Any, Any]:
    """(model, optimizer) for `write_checkpoint`, in the single-process format.

    Under FSDP this is a collective (every rank must call it): the shards are gathered to full tensors
    on rank 0's CPU, and the optimizer state, which PyTorch keys by parameter name, is renumbered the
    way `Optimizer.state_dict()` numbers it, so any world size (or none) can resume from it.
    """
    if not is_sharded(model):
        return model, optimizer
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim = None
    if optimizer is not None:
        by_name = get_optimizer_state_dict(model, optimizer, options=options)
        optim = _Snapshot(_numbered(by_name, model, optimizer) if by_name else {})
    return _Snapshot(weights), optim


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each optimizer parameter, in the order `Optimizer.state_dict()` numbers them."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _numbered(by_name: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    state = {index[name]: value for name, value in by_name["state"].items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]]
    return {"state": state, "param_groups": groups}


def _named(numbered: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    names = _param_names(model, optimizer)
    state = {names[int(i)]: value for i, value in numbered["state"].items()}
    groups = [{**g, "params": [names[int(i)] for i in g["params"]]} for g in numbered["param_groups"]]
    return {"state": state, "param_groups": groups}


__all__ = ["BEST", "CHECKPOINTS", "CONFIG", "MANIFEST", "CheckpointInfo", "Head", "TokenizerInfo", "WEIGHTS",
           "build_model", "check_finite", "check_resumable", "checkpoint_dirs", "full_state", "is_sharded",
           "latest_checkpoint", "latest_intact", "load_optimizer", "load_weights", "read_info", "read_state",
           "remove_leftovers", "resolve_checkpoint", "restore_rng", "save_checkpoint", "verify", "write_checkpoint"]
