"""Pre-training (the paper's L1): maximise next-token likelihood over token shards."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from genpt import checkpoint as ckpt
from genpt import io
from genpt.architectures import build_model
from genpt.config import PretrainConfig, apply_overrides, from_dict, load_pretrain_config
from genpt.data.shards import LMBatches, TokenShards
from genpt.errors import GenptError
from genpt.tokenizer import Tokenizer
from genpt.train import distributed
from genpt.train.loop import TrainResult, TrainTask, train
from genpt.train.precision import choose_dtype
from genpt.train.run_dir import check_run_dir, writing

log = logging.getLogger("genpt")
CONFIG_FILE = "config.json"
RUN_KEYS = {"model", "train", "data"}  # what makes a config.json a pre-training run's


def shards_tokenizer(shards_dir: Path) -> Path:
    """`genpt prepare` keeps the tokenizer it used beside the shards."""
    path = Path(shards_dir) / "tokenizer.json"
    if not path.is_file():
        raise GenptError(f"{path}: missing; prepare the shards with `genpt prepare`, which stores it there")
    return path


def resume_config(run_dir: Path, overrides: list[str]) -> PretrainConfig:
    """The settings a run was started with, with `--set` overrides (e.g. a larger train.max_steps)."""
    data = io.read_json(Path(run_dir) / CONFIG_FILE, "--resume needs a run folder made by `genpt pretrain`")
    config = from_dict(PretrainConfig, apply_overrides(data, overrides))
    config.validate()
    return config


def run_config(run_dir: str | Path, overrides: list[str] = (), *, resume: bool, config_file: str | Path | None = None,
               new: Callable[[], PretrainConfig] | None = None, base: dict | None = None) -> PretrainConfig:
    """A resumed run's own settings (with `overrides`) when `run_dir` holds one, else a new run's: `new()`, or
    defaults, then `base` (a recipe), then `config_file`, then `overrides`."""
    if resume and (Path(run_dir) / CONFIG_FILE).exists():
        return resume_config(Path(run_dir), list(overrides))
    return new() if new is not None else load_pretrain_config(config_file, list(overrides), base)


def pretrain(
    config: PretrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Pre-train a model as `config` says, writing checkpoints and metrics to `run_dir`.

    Under torchrun every rank runs this; they share the work of each batch and rank 0 writes.
    """
    resume = resume or distributed.restarted()  # torchrun --max-restarts: a new group continues the run
    with distributed.process_group(config.train.device, config.train.collective_timeout) as env:
        return _pretrain(config, Path(run_dir), env, resume=resume, progress=progress)


def _pretrain(
    config: PretrainConfig, run_dir: Path, env: distributed.Env, *, resume: bool, progress: bool
) -> TrainResult:
    check_run_dir(run_dir, resume=resume, settings=CONFIG_FILE, keys=RUN_KEYS)
    shards_dir = Path(config.data.shards)
    train_shards = TokenShards(shards_dir, "train")
    val_shards = TokenShards(shards_dir, "val") if _has_split(shards_dir, "val") else None
    tokenizer_json = shards_tokenizer(shards_dir)
    tokenizer = Tokenizer.load(tokenizer_json)
    if tokenizer.fingerprint != train_shards.tokenizer_fingerprint:
        raise GenptError(f"{shards_dir}: shards were made with another tokenizer than {tokenizer_json}")
    config.model.vocab_size = tokenizer.vocab_size
    config.validate()
    if config.train.dtype == "auto":  # measured once, by rank 0, and written into config.json
        device = distributed.resolve_device(config.train.device, env)
        config.train.dtype = distributed.broadcast(choose_dtype(config.model, config.train, device)
                                                   if env.is_main else None)
    micro, _ = distributed.batch_plan(config.train.batch_size, config.train.micro_batch_size, env.world_size)

    with writing(run_dir, env.is_main):  # rank 0 holds the run folder's lock until the run ends
        found = ckpt.latest_intact(run_dir) if resume and env.is_main else None
        if found is not None:
            if ckpt.read_info(found).tokenizer.fingerprint != tokenizer.fingerprint:
                raise GenptError(
                    f"{found}: checkpoint was trained with a different tokenizer than the shards in {shards_dir}"
                )
            ckpt.check_resumable(found, vars(config.model))  # before config.json is rewritten
        if env.is_main:
            check_run_dir(run_dir, resume=resume, settings=CONFIG_FILE, keys=RUN_KEYS)  # again, under the lock
            io.write_json(run_dir / CONFIG_FILE, config.to_dict())
        log.info("settings:\n%s", json.dumps(config.to_dict(), indent=2))

        torch.manual_seed(config.train.seed)
        model = build_model(config.model)
        log.info("model: %.2fM parameters; %d training tokens", model.num_parameters() / 1e6, len(train_shards))
        cfg = config.train
        n_ctx = config.model.n_ctx
        # Micro-batch i holds global samples i*micro ..., so sample k of global batch b is the same window
        # whatever the world size and micro-batch size; the validation batches are the same for any world size.
        batches = LMBatches(train_shards, micro, n_ctx, cfg.seed)
        evaluate = None
        if val_shards is not None:
            evaluate = validation(val_shards, cfg.micro_batch, n_ctx, cfg.eval_batches)
        task = TrainTask(
            micro_batch=batches.get,
            loss=lambda model, ids: model(ids, labels=ids, return_logits=False).loss,
            tokens=lambda ids: ids.numel(),
            evaluate=evaluate,
            checkpoint_config={
                "model": vars(config.model).copy(),
                "tokenizer": {"fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size},
            },
            tokenizer_json=tokenizer_json,
        )
        return train(model, cfg, task, run_dir, total_steps=cfg.max_steps, resume=resume, progress=progress)


def _has_split(shards_dir: Path, split: str) -> bool:
    meta = io.read_json(shards_dir / "meta.json")
    return meta.get("splits", {}).get(split, {}).get("tokens", 0) > 0


def validation(shards: TokenShards, batch_size: int, n_ctx: int, max_batches: int):
    """Mean LM loss and perplexity over the same fixed validation windows at every evaluation.

    Under torchrun the batches are shared out between the ranks and their losses gathered back in
    order, so the result is the one a single process computes.
    """
    windows = LMBatches(shards, batch_size, n_ctx, seed=0)
    n_batches = max(1, min(max_batches, windows.num_windows // batch_size))

    def evaluate(model) -> dict[str, float]:
        device = next(model.parameters()).device

        def batch_loss(index: int) -> float:
            ids = windows.get(index).to(device)
            return model(ids, labels=ids, return_logits=False).loss.float().item()

        losses = distributed.map_in_order(batch_loss, n_batches, model)
        loss = sum(losses) / len(losses)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    return evaluate
