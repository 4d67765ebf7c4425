"""Moving models between genpt, the original GPT-1 release and Hugging Face `OpenAIGPT*` folders.

Every conversion goes through one in-memory form, `Converted`: a genpt model's tensors and shape, its
tokenizer and, for a fine-tuned model, its task and head. `read` makes one from any format, `write_genpt`
and `genpt.interop.hf.write_hf` write one out; `convert` is the two together (`genpt convert`), and
`resolve_init` lets `genpt finetune --init` start from a release or Hugging Face folder directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genpt.config import ModelConfig, from_dict
from genpt.errors import GenptError

log = logging.getLogger("genpt")

FORMATS = ("openai", "hf", "genpt")
TARGETS = ("genpt", "hf")
CONVERSION_VERSION = 1  # part of resolve_init's cache key: bump when converted checkpoints change


@dataclass
class Converted:
    """A model on its way between formats, in genpt's names and layouts (`nn.Linear` weights are (out, in))."""

    config: ModelConfig
    state: dict[str, torch.Tensor]  # a genpt GPT's tensors; no tied LM head, no vocabulary padding rows
    tokenizer: Any  # genpt.tokenizer.Tokenizer or genpt.gpt1_tokenizer.GPT1Tokenizer
    task: dict | None = None  # a fine-tuned model's TaskSpec.to_dict()
    head: dict | None = None  # its config.json "head" section: n_out, max_len, clf_pdrop
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)  # "linear.weight", "linear.bias"
    source: str = ""


def append_rows(weight: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """Token embeddings grown to `rows`, the new ones drawn from N(0, 0.02) as GPT-1's fine-tuning code drew
    its special tokens' embeddings."""
    extra = rows - weight.size(0)
    if extra <= 0:
        return weight
    generator = torch.Generator().manual_seed(seed)
    new = torch.randn(extra, weight.size(1), generator=generator) * 0.02
    return torch.cat([weight.float(), new.to(weight.device)])


def unpadded(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state without the embedding's padding rows (ModelConfig.pad_vocab_multiple), which no format
    but genpt's own knows of."""
    return {**state, "tokens_embed.weight": state["tokens_embed.weight"][: config.vocab_size]}


def padded(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state with the zero padding rows a genpt model of `config` has."""
    weight = state["tokens_embed.weight"]
    extra = config.padded_vocab_size - weight.size(0)
    if extra <= 0:
        return state
    return {**state, "tokens_embed.weight": torch.cat([weight, weight.new_zeros(extra, weight.size(1))])}


def cut_positions(state: dict[str, torch.Tensor], config: ModelConfig, n_ctx: int | None, where: Path) -> None:
    """Keep only the first `n_ctx` position embeddings (a shorter context needs no others)."""
    if n_ctx is None:
        return
    if not 0 < n_ctx <= config.n_ctx:
        raise GenptError(f"--n-ctx {n_ctx}: {where} has {config.n_ctx} positions; choose 1 to {config.n_ctx}")
    state["positions_embed.weight"] = state["positions_embed.weight"][:n_ctx].contiguous()
    config.n_ctx = n_ctx


def detect_format(path: str | Path) -> str:
    """openai (params_shapes.json), hf (config.json with a model_type) or genpt (a run or checkpoint folder)."""
    path = Path(path)
    if (path / "params_shapes.json").is_file():
        return "openai"
    config = path / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GenptError(f"{config}: not valid JSON ({e})") from None
        return "hf" if isinstance(data, dict) and ("model_type" in data or "architectures" in data) else "genpt"
    if (path / "checkpoints").is_dir() or (path / "best").is_dir():
        return "genpt"
    if not path.exists():
        raise GenptError(f"{path}: no such folder")
    raise GenptError(f"{path}: neither a genpt run or checkpoint (config.json), an original GPT-1 release "
                     "(params_shapes.json + params_0.npy ...) nor a Hugging Face folder (config.json)")


def read(path: str | Path, source: str | None = None, *, n_ctx: int | None = None, n_head: int = 12,
         pipeline: str | None = None, seed: int = 0) -> Converted:
    """A model from any format; `source` is detected when not given.

    `pipeline` picks GPT-1's tokenizer pipeline (release or transformers) for a GPT-1 vocabulary: by default
    the release's for the release, transformers 5.x's for a Hugging Face folder (what `transformers` gives).
    """
    source = source or detect_format(path)
    if source == "openai":
        from genpt.interop.openai import read_release

        return read_release(path, n_head=n_head, n_ctx=n_ctx, pipeline=pipeline or "release", seed=seed)
    if source == "hf":
        from genpt.interop.hf import read_hf

        return read_hf(path, n_ctx=n_ctx, pipeline=pipeline, seed=seed)
    if source == "genpt":
        converted = read_genpt(path)
        cut_positions(converted.state, converted.config, n_ctx, Path(path))
        return converted
    raise GenptError(f"--from must be one of {', '.join(FORMATS)}, got {source!r}")


def read_genpt(path: str | Path) -> Converted:
    """A genpt run (its best or newest checkpoint) or checkpoint folder, pre-trained or fine-tuned."""
    from genpt import gpt1_tokenizer
    from genpt.model import GPT, GPTForTask
    from genpt.train.checkpoint import load_weights, resolve_checkpoint

    checkpoint = resolve_checkpoint(path)
    try:
        data = json.loads((checkpoint / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise GenptError(f"{checkpoint / 'config.json'}: unreadable ({e})") from None
    config = from_dict(ModelConfig, data.get("model", {}), "model.")
    tokenizer = gpt1_tokenizer.load(checkpoint / "tokenizer.json")
    if "task" not in data:
        model = GPT(config)
        load_weights(model, checkpoint)  # checks names and shapes, naming the file
        state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
        return Converted(config, unpadded(state, config), tokenizer, source=f"genpt:{checkpoint}")
    model = GPTForTask(config, data["task"]["transform"], data["head"]["n_out"])
    load_weights(model, checkpoint)
    state = unpadded({k.removeprefix("gpt."): v for k, v in model.state_dict().items()
                      if k.startswith("gpt.") and k != "gpt.lm_head.weight"}, config)
    head_state = {k.removeprefix("head."): v for k, v in model.state_dict().items() if k.startswith("head.")}
    return Converted(config, state, tokenizer, task=data["task"], head=data["head"], head_state=head_state,
                     source=f"genpt:{checkpoint}")


def write_genpt(converted: Converted, output: str | Path) -> Path:
    """Write a genpt checkpoint folder (model.safetensors, config.json, state.json, tokenizer.json).

    It is written under a temporary name and renamed when complete. A fine-tuned model keeps its head.
    """
    from genpt import gpt1_tokenizer
    from genpt.model import GPT, GPTForTask
    from genpt.train.checkpoint import write_checkpoint

    output = Path(output)
    config = converted.config
    config.validate()
    if converted.tokenizer.vocab_size != config.vocab_size:
        raise GenptError(f"the tokenizer has {converted.tokenizer.vocab_size} ids, the model {config.vocab_size}")
    state = padded(converted.state, config)
    with torch.device("meta"):  # no time spent initialising weights that are replaced next
        if converted.task is None:
            model = GPT(config)
        else:
            model = GPTForTask(config, converted.task["transform"], converted.head["n_out"])
            state = {**{f"gpt.{k}": v for k, v in state.items()},
                     **{f"head.{k}": v for k, v in converted.head_state.items()}}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or any(not k.endswith("lm_head.weight") for k in missing):
        raise GenptError(f"{converted.source}: tensors do not fit a genpt model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    meta = {"model": dataclasses.asdict(config),
            "tokenizer": {"kind": gpt1_tokenizer.kind(converted.tokenizer),
                          "fingerprint": converted.tokenizer.fingerprint,
                          "vocab_size": converted.tokenizer.vocab_size},
            "converted_from": converted.source}
    if converted.task is not None:
        meta.update(task=converted.task, head=converted.head)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_json = Path(tmp) / "tokenizer.json"
        converted.tokenizer.save(tokenizer_json)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(output, model, None, {"step": 0, "tokens_seen": 0}, config=meta,
                         tokenizer_json=tokenizer_json)
    return output


def convert(path: str | Path, output: str | Path, *, source: str | None = None, target: str = "genpt",
            n_ctx: int | None = None, n_head: int = 12, pipeline: str | None = None, seed: int = 0) -> Path:
    """`genpt convert`: read `path` (format `source`, detected if None) and write it to `output` as `target`."""
    if target not in TARGETS:
        raise GenptError(f"--to must be one of {', '.join(TARGETS)}, got {target!r}")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise GenptError(f"{output}: already exists; choose another --output")
    converted = read(path, source, n_ctx=n_ctx, n_head=n_head, pipeline=pipeline, seed=seed)
    if target == "genpt":
        return write_genpt(converted, output)
    from genpt.interop.hf import write_hf

    return write_hf(converted, output)


def cache_dir() -> Path:
    """Where `resolve_init` keeps converted checkpoints: $GENPT_CACHE/converted, else ~/.cache/genpt/converted."""
    root = os.environ.get("GENPT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "genpt") / "converted"


def resolve_init(path: str | Path) -> Path:
    """A genpt checkpoint folder for `path`: a genpt run or checkpoint as it is, a release or Hugging Face
    folder converted once into the cache (keyed by its files' names, sizes and times) and reused after."""
    from genpt.train.checkpoint import resolve_checkpoint

    path = Path(path)
    try:
        source = detect_format(path)
    except GenptError:
        source = "genpt"  # resolve_checkpoint says what a run folder should hold
    if source == "genpt":
        return resolve_checkpoint(path)
    key = hashlib.sha256(f"{CONVERSION_VERSION}\n{source}\n{path.resolve()}".encode())
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        stat = f.stat()
        key.update(f"\n{f.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    target = cache_dir() / f"{source}-{key.hexdigest()[:16]}"
    if (target / "model.safetensors").is_file():  # written whole or not at all (write_checkpoint renames)
        return target
    log.info("converting %s (%s) into %s", path, source, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenptError(f"cannot create {target.parent}: {e.strerror}; set GENPT_CACHE to a writable folder") \
            from None
    shutil.rmtree(target, ignore_errors=True)
    return write_genpt(read(path, source), target)


__all__ = ["Converted", "FORMATS", "TARGETS", "append_rows", "cache_dir", "convert", "cut_positions",
           "detect_format", "read", "read_genpt", "resolve_init", "write_genpt"]
