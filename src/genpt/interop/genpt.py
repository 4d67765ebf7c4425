"""genpt's own format as a conversion source and target: a run or checkpoint folder, pre-trained or fine-tuned."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from genpt import checkpoint as ckpt
from genpt import gpt1_tokenizer
from genpt.errors import GenptError
from genpt.interop.common import Converted, padded, unpadded
from genpt.model import GPT, GPTForTask


def read_genpt(path: str | Path) -> Converted:
    """A genpt run (its best or newest checkpoint) or checkpoint folder, pre-trained or fine-tuned."""
    checkpoint = ckpt.resolve_checkpoint(path)
    info = ckpt.read_info(checkpoint)
    if info.model.arch != "transformer":
        raise GenptError(f"{checkpoint}: model.arch is {info.model.arch}; only the Transformer has another format "
                         "to go to")
    tokenizer = gpt1_tokenizer.load(checkpoint / "tokenizer.json")
    model = ckpt.build_model(info)
    ckpt.load_weights(model, checkpoint)  # checks names and shapes, naming the file
    config, source = info.model, f"genpt:{checkpoint}"
    if not isinstance(model, GPTForTask):
        state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
        return Converted(config, unpadded(state, config), tokenizer, source=source)
    state = unpadded({k.removeprefix("gpt."): v for k, v in model.state_dict().items()
                      if k.startswith("gpt.") and k != "gpt.lm_head.weight"}, config)
    head_state = {k.removeprefix("head."): v for k, v in model.state_dict().items() if k.startswith("head.")}
    return Converted(config, state, tokenizer, task=info.task.to_dict(), head=dataclasses.asdict(info.head),
                     head_state=head_state, source=source)


def write_genpt(converted: Converted, output: str | Path) -> Path:
    """Write a genpt checkpoint folder (model.safetensors, config.json, state.json, tokenizer.json).

    It is written under a temporary name and renamed when complete. A fine-tuned model keeps its head.
    """
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
        ckpt.write_checkpoint(output, model, None, {"step": 0, "tokens_seen": 0}, config=meta,
                              tokenizer_json=tokenizer_json)
    return output


__all__ = ["read_genpt", "write_genpt"]
