"""The one training loop, shared by pre-training and fine-tuning.

A stage hands the loop a `TrainTask`: how to fetch micro-batch number i, how to turn a batch into a
loss, and how to evaluate. Batches are a pure function of their index, so the data position of a
run is its step count and `--resume` continues exactly where a killed run stopped.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genpt.config import TrainConfig
from genpt.errors import GenptError
from genpt.model import param_groups
from genpt.train import checkpoint as ckpt
from genpt.train.metrics_log import MetricsLog
from genpt.train.schedule import learning_rate

log = logging.getLogger("genpt")


@dataclass
class TrainTask:
    """What a stage gives the loop."""

    micro_batch: Callable[[int], Any]  # global micro-batch index -> batch (tensors on the CPU)
    loss: Callable[[nn.Module, Any], torch.Tensor]  # (model, batch on device) -> scalar loss
    tokens: Callable[[Any], int]  # tokens in a batch, for throughput
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None  # validation metrics
    checkpoint_config: dict[str, Any] = field(default_factory=dict)  # written as each checkpoint's config.json
    tokenizer_json: Path | None = None  # copied into each checkpoint
    best_metric: str | None = None  # keep the checkpoint where this validation metric peaked, in best/


@dataclass
class TrainResult:
    step: int
    tokens_seen: int
    seconds: float
    last_eval: dict[str, float]
    checkpoint: Path | None
    stopped_early: bool  # by --max-minutes


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GenptError(f"train.device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenptError(f"train.device is {name!r} but no CUDA device is available")
    return device


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast_for(device: torch.device, dtype: str):
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay on matrices only (GPT-1's modified L2 with vector_l2 off)."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=device.type == "cuda",
    )


class _Progress:
    """A tqdm bar on a terminal; plain log lines every `log_interval` steps otherwise."""

    def __init__(self, start: int, total: int, enabled: bool):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, total: int, stats: dict[str, float], logged: bool) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if logged:
                self.bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{stats['tokens_per_s']:,.0f}")
        elif logged:
            log.info("step %d/%d  loss %.4f  lr %.3g  %.0f tok/s", step, total, stats["loss"], stats["lr"],
                     stats["tokens_per_s"])

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.info("%s", text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    model: nn.Module,
    cfg: TrainConfig,
    task: TrainTask,
    run_dir: Path,
    *,
    total_steps: int,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Run optimizer steps until `total_steps` (or `cfg.max_minutes`), checkpointing as configured."""
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    model.to(device)
    optimizer = make_optimizer(model, cfg, device)
    step, tokens_seen, window, best = 0, 0, [0.0, 0], -math.inf
    if resume:
        found = ckpt.latest_checkpoint(run_dir)
        if found is None:
            log.info("no checkpoint in %s yet: starting from step 0", run_dir)
        else:
            ckpt.load_weights(model, found)
            ckpt.load_optimizer(optimizer, found)
            state = ckpt.read_state(found)
            ckpt.restore_rng(state["rng"])
            step, tokens_seen, window = state["step"], state["tokens_seen"], state["log_window"]
            best = state.get("best", best)
            log.info("resumed from %s (step %d, %d tokens seen)", found, step, tokens_seen)
    metrics = MetricsLog(run_dir, resume_step=step if resume else None)
    forward = torch.compile(model) if cfg.compile else model
    accum = cfg.accumulation_steps
    bar = _Progress(step, total_steps, progress)
    started, last_log_time, last_log_tokens = time.monotonic(), time.monotonic(), tokens_seen
    last_eval: dict[str, float] = {}
    saved: Path | None = None
    stopped_early = False

    def save() -> Path:
        state = {"tokens_seen": tokens_seen, "log_window": window, "best": best}
        return ckpt.save_checkpoint(run_dir, step, model, optimizer, state, config=task.checkpoint_config,
                                    tokenizer_json=task.tokenizer_json, keep=cfg.keep_checkpoints)

    try:
        while step < total_steps:
            lr = learning_rate(step, peak=cfg.lr, warmup=cfg.warmup_steps, total=total_steps,
                               schedule=cfg.lr_schedule, floor=cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            step_loss = torch.zeros((), device=device)
            for micro in range(accum):
                batch = to_device(task.micro_batch(step * accum + micro), device)
                with autocast_for(device, cfg.dtype):
                    loss = task.loss(forward, batch)
                (loss / accum).backward()
                step_loss += loss.detach().float()
                tokens_seen += task.tokens(batch)
            grad_norm = (
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window[0] += step_loss.item() / accum
            window[1] += 1
            logged = step % cfg.log_interval == 0 or step == total_steps
            stats = {"loss": window[0] / window[1], "lr": lr}
            if logged:
                now = time.monotonic()
                stats["tokens_per_s"] = (tokens_seen - last_log_tokens) / max(now - last_log_time, 1e-9)
                if grad_norm is not None:
                    stats["grad_norm"] = grad_norm.item()
                metrics.write(step, "train", **stats, tokens=tokens_seen)
                if not math.isfinite(stats["loss"]):
                    raise GenptError(f"training diverged at step {step} (loss {stats['loss']}); lower train.lr")
                last_log_time, last_log_tokens, window = now, tokens_seen, [0.0, 0]
            bar.update(step, total_steps, stats, logged)
            timed_out = cfg.max_minutes > 0 and time.monotonic() - started >= cfg.max_minutes * 60
            if task.evaluate is not None and (step % cfg.eval_interval == 0 or step == total_steps or timed_out):
                last_eval = _evaluate(model, forward, task, device, cfg)
                metrics.write(step, "val", **last_eval)
                bar.message(f"step {step}: " + "  ".join(f"val {k} {v:.4f}" for k, v in last_eval.items()))
                if task.best_metric is not None and last_eval[task.best_metric] > best:
                    best = last_eval[task.best_metric]
                    ckpt.write_checkpoint(run_dir / ckpt.BEST, model, None, {"step": step, "metrics": last_eval},
                                          config=task.checkpoint_config, tokenizer_json=task.tokenizer_json)
            if step % cfg.checkpoint_interval == 0 or step == total_steps or timed_out:
                saved = save()
            if timed_out:
                stopped_early = step < total_steps
                bar.message(f"stopping after {cfg.max_minutes:g} minutes at step {step}")
                break
    except KeyboardInterrupt:
        bar.message(f"interrupted: saving step {step} so that --resume continues from it")
        save()
        raise
    finally:
        bar.close()
        metrics.close()
    return TrainResult(step, tokens_seen, time.monotonic() - started, last_eval, saved, stopped_early)


def _evaluate(model: nn.Module, forward: nn.Module, task: TrainTask, device, cfg: TrainConfig) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), autocast_for(device, cfg.dtype):
        result = task.evaluate(forward)
    model.train()
    return result
