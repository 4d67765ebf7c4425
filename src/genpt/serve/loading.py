"""The model behind the server: any folder `genpt.load` takes, served as a classifier or a language model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genpt import checkpoint as ckpt
from genpt.errors import GenptError
from genpt.load import Loaded, load_model
from genpt.model import GPT
from genpt.train.metrics_log import read_metrics

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class ServedModel:
    name: str  # the id clients pass as `model` (OpenAI's field)
    folder: Path  # what the user named
    loaded: Loaded

    @property
    def kind(self) -> str:
        task = self.loaded.task
        if task is None:
            return "lm"
        return "multiple_choice" if task.transform == "multiple_choice" else "classifier"

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def lm(self) -> GPT | None:
        """The language model of a pre-trained folder (a fine-tuned one answers with its head only)."""
        return self.loaded.model if self.loaded.task is None else None

    @property
    def finetuned(self) -> Loaded | None:
        return self.loaded if self.loaded.task is not None else None

    @property
    def n_ctx(self) -> int:
        return self.loaded.info.model.n_ctx

    def describe(self) -> dict[str, Any]:
        """What GET /v1/model answers: the task, its labels, the sizes and the run's metrics."""
        gpt, config = self.loaded.lm, self.loaded.info.model
        info: dict[str, Any] = {
            "id": self.name, "kind": self.kind, "folder": str(self.folder), "checkpoint": str(self.loaded.checkpoint),
            "parameters": gpt.num_parameters(), "context": config.n_ctx, "vocab_size": config.vocab_size,
            "layers": config.n_layer, "width": config.n_embd, "heads": config.n_head,
            "dtype": str(gpt.tokens_embed.weight.dtype).removeprefix("torch."),
        }
        if (task := self.loaded.task) is not None:
            info["task"] = {"name": task.name, "transform": task.transform, "target": task.target,
                            "labels": list(task.label_names), "num_choices": task.num_choices,
                            "max_len": self.loaded.max_len}
        info["metrics"] = run_metrics(self.loaded.checkpoint)
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
    loaded = load_model(folder, device)
    loaded.model.to(DTYPES[dtype])
    resolved = folder.resolve()
    name = name or (resolved.parent.name if resolved.name == ckpt.BEST else resolved.name)
    return ServedModel(name, folder, loaded)
