"""Discriminative fine-tuning (the paper's section 3.2): a linear head, L3 = L2 + lambda * L1.

It reuses the pre-training loop; what differs is the batch (task input transformations), the loss,
the schedule (linear warm-up over 0.2% then linear decay) and the evaluation (dev metrics per epoch,
the best epoch kept in `best/`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genpt import checkpoint as ckpt
from genpt import io
from genpt.architectures import build_model
from genpt.checkpoint import read_info
from genpt.config import FinetuneConfig, TrainConfig
from genpt.data.readers import read_examples
from genpt.data.tasks import Example, TaskSpec
from genpt.data.transforms import collate, encode_examples
from genpt.errors import GenptError
from genpt.evaluation import predict_encoded, score
from genpt.labels import IGNORE_INDEX
from genpt.load import load_lm, load_tokenizer, resolve
from genpt.model import GPTForTask
from genpt.objectives import combined_loss, task_loss
from genpt.tokenizer import Tokenizer
from genpt.train import distributed
from genpt.train.loop import TrainTask, train
from genpt.train.metrics_log import read_metrics
from genpt.train.run_dir import check_run_dir, writing

log = logging.getLogger("genpt")
SETTINGS_FILE = "finetune.json"
RUN_KEYS = {"init", "task", "finetune"}  # what makes a finetune.json genpt's


@dataclass
class FinetuneResult:
    run_dir: Path
    epochs: list[dict[str, float]]  # dev metrics after each epoch
    best: dict[str, float]
    best_epoch: int
    truncated: dict[str, int]  # examples cut to fit the context, per split
    seconds: float


def n_outputs(task: TaskSpec) -> int:
    if task.target == "class":
        return len(task.label_names)
    return 1  # a score, or each answer's score in a multiple choice


def initial_model(init: str | Path, task: TaskSpec, cfg: FinetuneConfig) -> tuple[GPTForTask, Tokenizer, Path]:
    """The pre-trained model with a fresh head; `scratch` and `transfer_layers` as the paper's ablations."""
    checkpoint = resolve(init)  # a genpt checkpoint; a release or Hugging Face folder is converted first
    base_config = read_info(checkpoint).model
    tokenizer = load_tokenizer(checkpoint)  # GPT-1 release runs bring their own pipeline
    if tokenizer.vocab_size != base_config.vocab_size:
        raise GenptError(f"{checkpoint}: tokenizer has {tokenizer.vocab_size} ids, the model {base_config.vocab_size}")
    torch.manual_seed(cfg.seed)
    clf_pdrop = cfg.for_model(base_config).clf_pdrop  # by the model's size where not given
    model = GPTForTask(base_config, task.transform, n_outputs(task), clf_pdrop, build_model(base_config))
    if cfg.scratch:
        return model, tokenizer, checkpoint
    pretrained = load_lm(checkpoint)
    state = pretrained.state_dict()
    if base_config.arch != "transformer" and cfg.transfer_layers >= 0:
        raise GenptError(f"--transfer-layers counts Transformer blocks; {checkpoint} holds model.arch="
                         f"{base_config.arch}, which has none (transfer it whole: -1)")
    n_layer = base_config.n_layer
    keep = n_layer if cfg.transfer_layers < 0 else cfg.transfer_layers
    if keep > n_layer:
        raise GenptError(f"--transfer-layers {keep}: the model has only {n_layer} blocks")
    state = {k: v for k, v in state.items() if not k.startswith("h.") or int(k.split(".")[1]) < keep}
    model.gpt.load_state_dict(state, strict=False)  # blocks past `keep` stay as initialised
    log.info("initialised from %s (embeddings and %d of %d blocks)", checkpoint, keep, n_layer)
    return model, tokenizer, checkpoint


def finetune(
    init: str | Path,
    task: TaskSpec,
    train_file: str | Path,
    dev_file: str | Path | None,
    output: str | Path,
    cfg: FinetuneConfig | None = None,
    *,
    train_examples: list[Example] | None = None,
    dev_examples: list[Example] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune the model in `init` on `task`; examples may be given directly instead of files.

    Under torchrun every rank runs this; they share the work of each batch and rank 0 writes.
    """
    cfg = cfg or FinetuneConfig()
    cfg.validate()
    resume = resume or distributed.restarted()  # torchrun --max-restarts: a new group continues the run
    with distributed.process_group(cfg.device, cfg.collective_timeout) as env:
        return _finetune(init, task, train_file, dev_file, Path(output), cfg, env, train_examples=train_examples,
                         dev_examples=dev_examples, resume=resume, progress=progress)


def _finetune(
    init: str | Path,
    task: TaskSpec,
    train_file: str | Path,
    dev_file: str | Path | None,
    run_dir: Path,
    cfg: FinetuneConfig,
    env: distributed.Env,
    *,
    train_examples: list[Example] | None,
    dev_examples: list[Example] | None,
    resume: bool,
    progress: bool,
) -> FinetuneResult:
    check_run_dir(run_dir, resume=resume, settings=SETTINGS_FILE, keys=RUN_KEYS)
    train_examples = train_examples if train_examples is not None else read_examples(task, train_file)
    if dev_examples is None and dev_file is not None:
        dev_examples = read_examples(task, dev_file)
    if not train_examples:
        raise GenptError(f"{train_file}: no training examples")
    def start() -> tuple[GPTForTask, Tokenizer, Path, FinetuneConfig]:
        resolved = cfg.for_model(read_info(resolve(init)).model)  # rate, epochs, lambda, dropout by size
        return *initial_model(init, task, resolved), resolved

    # A released or Hugging Face `init` is converted into a cache folder: one writer at a time.
    model, tokenizer, base, cfg = distributed.first_on_each_node(start)
    n_ctx = model.gpt.config.n_ctx
    max_len = min(cfg.max_len or n_ctx, n_ctx)
    train_set, train_cut = encode_examples(task, train_examples, tokenizer, max_len)
    dev_set, dev_cut = encode_examples(task, dev_examples or [], tokenizer, max_len)
    truncated = {"train": train_cut, "dev": dev_cut}
    log.info("%d train / %d dev examples; truncated to %d tokens: %d train, %d dev", len(train_set),
             len(dev_set), max_len, train_cut, dev_cut)

    # The global batch is fixed whatever the world size; each rank takes batch / world_size examples of
    # it (in micro-batches of `micro`). Every batch is full: each epoch's partial batch is dropped.
    batch = min(cfg.batch_size, len(train_set))
    micro_size = min(cfg.micro_batch_size, batch)
    micro, _ = distributed.batch_plan(batch, micro_size, env.world_size, section="finetune")
    steps_per_epoch = len(train_set) // batch  # the original code drops each epoch's partial batch
    total = steps_per_epoch * cfg.epochs
    loop_cfg = TrainConfig(
        **{**cfg.step_settings(), "micro_batch_size": micro}, batch_size=batch, lr=cfg.lr, seed=cfg.seed,
        warmup_steps=math.ceil(cfg.warmup_fraction * total), lr_schedule="linear", max_steps=total,
        log_interval=max(1, steps_per_epoch // 10), eval_interval=steps_per_epoch,
        checkpoint_interval=steps_per_epoch, keep_checkpoints=1,
    )
    order_cache: dict[int, np.ndarray] = {}

    def micro_batch(index: int):
        sample = index * micro
        epoch, offset = divmod(sample, steps_per_epoch * batch)
        if epoch not in order_cache:
            order_cache.clear()
            order_cache[epoch] = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set))
        chosen = order_cache[epoch][offset : offset + micro]
        return collate([train_set[i] for i in chosen], tokenizer.pad_id, task.target)

    def loss(model: GPTForTask, batch: dict) -> torch.Tensor:
        out = model(batch["input_ids"], batch["extract_index"], batch["lm_labels"] if cfg.lm_coef > 0 else None)
        return combined_loss(task_loss(task.target, out.logits, batch["labels"]), out.lm_loss, cfg.lm_coef)

    evaluate = None
    if dev_set:
        def evaluate(model) -> dict[str, float]:
            # Whole evaluation batches are shared out between the ranks and gathered back in order: every
            # dev example is scored once, in the batch a single process would put it in.
            size = cfg.eval_batch_size

            def predict_batch(index: int) -> list:
                chunk = dev_set[index * size : (index + 1) * size]
                return predict_encoded(model, chunk, task.target, tokenizer.pad_id, size)[0]

            batches = distributed.map_in_order(predict_batch, math.ceil(len(dev_set) / size), model)
            return score(task, [p for batch in batches for p in batch], dev_examples)

    with writing(run_dir, env.is_main):  # rank 0 holds the run folder's lock until the run ends
        found = ckpt.latest_intact(run_dir) if resume and env.is_main else None
        if found is not None:
            ckpt.check_resumable(found, dataclasses.asdict(model.gpt.config))  # before finetune.json is rewritten
        if env.is_main:
            check_run_dir(run_dir, resume=resume, settings=SETTINGS_FILE, keys=RUN_KEYS)  # again, under the lock
            settings = {"init": str(base), "task": task.to_dict(), "finetune": dataclasses.asdict(cfg)}
            io.write_json(run_dir / SETTINGS_FILE, settings)
        checkpoint_config = {
            "model": dataclasses.asdict(model.gpt.config),
            "tokenizer": {"fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size},
            "task": task.to_dict(),
            "head": {"n_out": n_outputs(task), "max_len": max_len, "clf_pdrop": cfg.clf_pdrop},
        }
        task_run = TrainTask(
            micro_batch=micro_batch, loss=loss, tokens=lambda b: int((b["lm_labels"] != IGNORE_INDEX).sum()),
            evaluate=evaluate, checkpoint_config=checkpoint_config, tokenizer_json=base / "tokenizer.json",
            best_metric=task.metrics[0] if dev_set else None, resume_checkpoints=cfg.resume_checkpoints,
        )
        result = train(model, loop_cfg, task_run, run_dir, total_steps=total, resume=resume, progress=progress)
    epochs = distributed.broadcast([{k: v for k, v in r.items() if k not in ("step", "split")}
                                    for r in read_metrics(run_dir) if r["split"] == "val"] if env.is_main else None)
    best_epoch, best = 0, {}
    if epochs:
        key = task.metrics[0]
        best_epoch = max(range(len(epochs)), key=lambda i: _finite(epochs[i][key])) + 1
        best = epochs[best_epoch - 1]
    return FinetuneResult(run_dir, epochs, best, best_epoch, truncated, result.seconds)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


__all__ = ["FinetuneResult", "finetune", "initial_model"]
