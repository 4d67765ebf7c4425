"""The one way to a model: from any folder a user may hold, a model ready to use and its tokenizer.

A folder can be a genpt run (its `best/` checkpoint if it keeps one, else its newest), a checkpoint
folder, a fine-tuned run, a Hugging Face `OpenAIGPT*` folder or the original GPT-1 release. The last two
are converted once into genpt's format in the cache ($GENPT_CACHE/converted, else
~/.cache/genpt/converted), keyed by their files' names, sizes and times, and read from there after.
Every command that takes a model (generate, perplexity, score, evaluate, predict, finetune --init) and
`genpt.load_model` come through here.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from genpt import checkpoint as ckpt
from genpt import gpt1_tokenizer, io
from genpt.checkpoint import CheckpointInfo
from genpt.data.tasks import TaskSpec
from genpt.errors import GenptError
from genpt.gpt1_tokenizer import GPT1Tokenizer
from genpt.interop import detect_format, read
from genpt.interop.genpt import write_genpt
from genpt.model import GPT, GPTForTask
from genpt.tokenizer import Tokenizer

log = logging.getLogger("genpt")

CONVERSION_VERSION = 1  # part of the cache key: bump when converted checkpoints change


@dataclass
class Loaded:
    """A model from a folder, in eval mode, with what is needed to use it."""

    model: GPT | GPTForTask  # GPTForTask for a fine-tuned model
    tokenizer: Tokenizer | GPT1Tokenizer  # a GPT-1 vocabulary keeps the pipeline it was converted with
    info: CheckpointInfo  # the model's shape; a fine-tuned model's task (labels) and head
    checkpoint: Path  # the genpt checkpoint folder it was read from

    @property
    def task(self) -> TaskSpec | None:
        return self.info.task

    @property
    def max_len(self) -> int:
        """Tokens an example is cut to: the fine-tuning's length, else the context."""
        return self.info.head.max_len if self.info.head is not None else self.info.model.n_ctx

    @property
    def lm(self) -> GPT:
        """The language model (for a fine-tuned model, its transformer with the tied LM head)."""
        return self.model.gpt if isinstance(self.model, GPTForTask) else self.model


def converted_cache() -> Path:
    """Where released and Hugging Face models are kept once converted."""
    return io.cache_dir() / "converted"


def resolve(path: str | Path) -> Path:
    """The genpt checkpoint folder for `path`: a run's best or newest checkpoint, a checkpoint as it is, a
    release or Hugging Face folder converted once into the cache and reused after."""
    path = Path(path)
    try:
        source = detect_format(path)
    except GenptError:
        source = "genpt"  # resolve_checkpoint says what a run folder should hold
    if source == "genpt":
        return ckpt.resolve_checkpoint(path)
    key = hashlib.sha256(f"{CONVERSION_VERSION}\n{source}\n{path.resolve()}".encode())
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        stat = f.stat()
        key.update(f"\n{f.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    target = converted_cache() / f"{source}-{key.hexdigest()[:16]}"
    if (target / ckpt.WEIGHTS).is_file():  # written whole or not at all (write_checkpoint renames)
        return target
    log.info("converting %s (%s) into %s", path, source, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenptError(f"cannot create {target.parent}: {e.strerror}; set GENPT_CACHE to a writable folder") \
            from None
    shutil.rmtree(target, ignore_errors=True)
    return write_genpt(read(path, source), target)


def load_tokenizer(path: str | Path) -> Tokenizer | GPT1Tokenizer:
    """The tokenizer stored with the model in `path` (any folder `resolve` takes)."""
    return gpt1_tokenizer.load(resolve(path) / "tokenizer.json")


def inference_device() -> torch.device:
    """Where many texts are scored at once (zero-shot curves, a report's confusion matrices): the GPU where there
    is one. Serving and `genpt predict` keep the CPU unless told otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """The model in `path` (any folder `resolve` takes), on `device`, in eval mode, with its tokenizer."""
    checkpoint = resolve(path)
    info = ckpt.read_info(checkpoint)
    model = ckpt.build_model(info)
    ckpt.load_weights(model, checkpoint)
    tokenizer = gpt1_tokenizer.load(checkpoint / "tokenizer.json")
    return Loaded(model.to(device).eval(), tokenizer, info, checkpoint)


def load_lm(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The language model in `path`; for a fine-tuned model, its transformer."""
    return load_model(path, device).lm


def load_finetuned(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """A fine-tuned model (with its task and head), ready to predict; a pre-trained one is refused."""
    loaded = load_model(path, device)
    if loaded.task is None:
        raise GenptError(f"{loaded.checkpoint}: a pre-trained model, not a fine-tuned one; run `genpt finetune` first")
    return loaded


__all__ = ["CONVERSION_VERSION", "Loaded", "converted_cache", "inference_device", "load_finetuned", "load_lm",
           "load_model", "load_tokenizer", "resolve"]
