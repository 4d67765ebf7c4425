"""Checkpoints: safetensors weights, JSON config and state, optimizer state; atomic writes and retention.

A checkpoint is a folder `checkpoints/step_00001000/` holding `model.safetensors`, `config.json`,
`state.json` and `optimizer.pt`. It is written under a temporary name and renamed when complete, so
a run killed mid-write never leaves a folder that `latest_checkpoint` would pick up.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genpt.config import model_config_from_json
from genpt.errors import GenptError
from genpt.model import GPT

CHECKPOINTS = "checkpoints"
BEST = "best"  # fine-tuning keeps the checkpoint of the best epoch here
_STEP_DIR = re.compile(r"^step_(\d{8})$")
TIED = "lm_head.weight"  # tied to tokens_embed.weight: stored once, under that name


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def _write_json(path: Path, data: dict) -> None:
    with path.open("w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: GPT,
    optimizer: torch.optim.Optimizer | None,
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
    for stale in root.glob(".tmp-*"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:08d}"
    write_checkpoint(final, model, optimizer, {"step": step, **state}, config=config, tokenizer_json=tokenizer_json)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_checkpoint(
    final: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    *,
    config: dict[str, Any],
    tokenizer_json: Path | None = None,
) -> None:
    """Write one checkpoint folder under a temporary name, then rename it into place."""
    tmp = final.parent / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not _tied(k)}
    save_file(weights, tmp / "model.safetensors", metadata={"format": "pt", "step": str(state.get("step"))})
    _write_json(tmp / "config.json", config)
    _write_json(tmp / "state.json", {**state, "rng": _rng_state()})
    if tokenizer_json is not None:
        shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if final.exists():  # the same checkpoint saved again (after a resume, or a new best): swap it whole
        old = final.parent / f".tmp-old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _fsync_dir(final.parent)


def _tied(key: str) -> bool:
    return key == TIED or key.endswith("." + TIED)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> dict[str, Any]:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])


def read_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / "state.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise GenptError(f"{path}: unreadable checkpoint state ({e})") from None


def load_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load `model.safetensors` into `model`, naming the file and tensor when shapes disagree."""
    path = Path(checkpoint) / "model.safetensors"
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
    model.load_state_dict(weights, strict=False)


def load_optimizer(optimizer: torch.optim.Optimizer, checkpoint: Path) -> None:
    path = Path(checkpoint) / "optimizer.pt"
    try:
        optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except FileNotFoundError:
        raise GenptError(f"{path}: missing; cannot resume the optimizer") from None
    except (ValueError, KeyError) as e:  # groups or shapes of another optimizer (train.optimizer changed?)
        raise GenptError(f"{path}: does not fit this run's optimizer ({e})") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder: its best checkpoint if it keeps one, else its newest."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    if (path / BEST / "model.safetensors").is_file():
        return path / BEST
    if not path.exists():
        raise GenptError(f"{path}: no such run or checkpoint folder")
    found = latest_checkpoint(path)
    if found is None:
        raise GenptError(f"{path}: holds no checkpoint (expected {CHECKPOINTS}/step_NNNNNNNN/model.safetensors)")
    return found


def load(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The model saved in a run folder (newest checkpoint) or a checkpoint folder, in eval mode."""
    checkpoint = resolve_checkpoint(path)
    model = GPT(model_config_from_json(checkpoint / "config.json"))
    load_weights(model, checkpoint)
    return model.to(device).eval()


def load_tokenizer(path: str | Path):
    """The tokenizer stored with a checkpoint (or a run's newest checkpoint): a `Tokenizer`, or a
    `GPT1Tokenizer` where the file is GPT-1's vocabulary with the release pipeline (genpt.gpt1_tokenizer)."""
    from genpt import gpt1_tokenizer

    checkpoint = resolve_checkpoint(path)
    return gpt1_tokenizer.load(checkpoint / "tokenizer.json")
