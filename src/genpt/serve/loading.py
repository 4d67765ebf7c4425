"""The model behind the server: any folder genpt can load, as a classifier or a language model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genpt.errors import GenptError
from genpt.interop import resolve_init
from genpt.model import GPT
from genpt.predict import FinetunedModel, load_finetuned
from genpt.train import checkpoint as ckpt
from genpt.train.metrics_log import read_metrics


@dataclass
class ServedModel:
    name: str  # the id clients pass as `model` (OpenAI's field)
    folder: Path  # what the user named
    checkpoint: Path  # the genpt checkpoint it resolved to
    tokenizer: Any  # genpt.tokenizer.Tokenizer or genpt.gpt1_tokenizer.GPT1Tokenizer
    lm: GPT | None = None  # a pre-trained language model
    finetuned: FinetunedModel | None = None  # a model with a task head

    @property
    def kind(self) -> str:
        if self.finetuned is None:
            return "lm"
        return "multiple_choice" if self.finetuned.task.transform == "multiple_choice" else "classifier"

    @property
    def n_ctx(self) -> int:
        return (self.lm if self.lm is not None else self.finetuned.model.gpt).config.n_ctx

    def describe(self) -> dict[str, Any]:
        """What GET /v1/model answers: the task, its labels, the sizes and the run's metrics."""
        gpt = self.lm if self.lm is not None else self.finetuned.model.gpt
        info: dict[str, Any] = {
            "id": self.name, "kind": self.kind, "folder": str(self.folder), "checkpoint": str(self.checkpoint),
            "parameters": gpt.num_parameters(), "context": gpt.config.n_ctx, "vocab_size": gpt.config.vocab_size,
            "layers": gpt.config.n_layer, "width": gpt.config.n_embd, "heads": gpt.config.n_head,
            "dtype": str(gpt.tokens_embed.weight.dtype).removeprefix("torch."),
        }
        if self.finetuned is not None:
            task = self.finetuned.task
            info["task"] = {"name": task.name, "transform": task.transform, "target": task.target,
                            "labels": list(task.label_names), "num_choices": task.num_choices,
                            "max_len": self.finetuned.max_len}
        info["metrics"] = run_metrics(self.checkpoint)
        return info


def run_metrics(checkpoint: Path) -> dict[str, Any]:
    """The step of the checkpoint and the last validation row of the run that wrote it, where known."""
    out: dict[str, Any] = {}
    state = checkpoint / "state.json"
    if state.is_file():
        out["step"] = json.loads(state.read_text()).get("step")
    # checkpoints/step_N/ or best/ sit inside the run folder, which keeps metrics.jsonl
    for run in (checkpoint, checkpoint.parent, checkpoint.parent.parent):
        if (run / "metrics.jsonl").is_file():
            val = [r for r in read_metrics(run) if r.get("split") == "val"]
            if val:
                out["val"] = {k: v for k, v in val[-1].items() if k != "split"}
            break
    return out


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_served(path: str | Path, device: str | torch.device = "cpu", name: str | None = None,
                dtype: str = "float32") -> ServedModel:
    """A genpt run or checkpoint, a fine-tuned folder, a Hugging Face or GPT-1 release folder, ready to serve.

    `dtype` "bfloat16" casts the weights once (not GPT-1's precision; on CPUs with AMX a batch runs
    several times faster); outputs are turned back to float32 before softmax and sampling."""
    if dtype not in DTYPES:
        raise GenptError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    folder = Path(path)
    if not folder.is_dir():
        raise GenptError(f"{folder}: no such folder; genpt serve takes a run, checkpoint, fine-tuned, Hugging Face "
                         "or GPT-1 release folder")
    checkpoint = resolve_init(folder)
    try:
        config = json.loads((checkpoint / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenptError(f"{checkpoint / 'config.json'}: unreadable ({e})") from None
    resolved = folder.resolve()
    name = name or (resolved.parent.name if resolved.name == ckpt.BEST else resolved.name)
    if "task" in config:
        finetuned = load_finetuned(checkpoint, device)
        finetuned.model.to(DTYPES[dtype])
        return ServedModel(name, folder, checkpoint, finetuned.tokenizer, finetuned=finetuned)
    lm = ckpt.load(checkpoint, device).to(DTYPES[dtype])
    return ServedModel(name, folder, checkpoint, ckpt.load_tokenizer(checkpoint), lm=lm)
