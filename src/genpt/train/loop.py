"""The one training loop, shared by pre-training and fine-tuning.

A stage hands the loop a `TrainTask`: how to fetch micro-batch number i, how to turn a batch into a
loss, and how to evaluate. Batches are a pure function of their index, so the data position of a
run is its step count and `--resume` continues exactly where a killed run stopped.

Under torchrun each optimizer step's micro-batches are split between the ranks in contiguous runs
(rank r takes micro-batches r*A .. r*A+A-1 of the step, A = accumulation per rank), and dropout is
seeded by the micro-batch index, so any world size computes the same micro-batches the same way and
the averaged gradient, and with it the whole run, does not depend on how many processes share it.
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

import numpy as np
import torch
from torch import nn

from genpt import checkpoint as ckpt
from genpt.attention_kernels import preferred_attention_kernels
from genpt.config import TrainConfig
from genpt.errors import GenptError
from genpt.kernels.backends import apply_backends
from genpt.train import distributed
from genpt.train.metrics_log import MetricsLog
from genpt.train.optimizers import make_optimizer, set_learning_rate
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
    """The device a plain (single-process) run uses for `train.device`."""
    return distributed.resolve_device(name, distributed.Env())


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
    """Run optimizer steps until `total_steps` (or `cfg.max_minutes`), checkpointing as configured.

    Under torchrun this runs on every rank, each on its slice of every batch; only rank 0 writes.
    With FSDP `model` is sharded in place and is usable only inside the process group afterwards.
    """
    with preferred_attention_kernels(cfg.attention_kernel), \
            distributed.process_group(cfg.device, cfg.collective_timeout) as env:
        return _train(model, cfg, task, Path(run_dir), env, total_steps=total_steps, resume=resume,
                      progress=progress)


def micro_seed(seed: int, index: int) -> int:
    """The RNG seed for micro-batch `index` (its dropout masks), the same on whichever rank runs it."""
    return int(np.random.SeedSequence([seed % 2**64, index]).generate_state(1)[0])


class _NoMetrics:
    """What ranks other than 0 log to."""

    def write(self, step: int, split: str, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _train(
    model: nn.Module,
    cfg: TrainConfig,
    task: TrainTask,
    run_dir: Path,
    env: distributed.Env,
    *,
    total_steps: int,
    resume: bool,
    progress: bool,
) -> TrainResult:
    device = distributed.resolve_device(cfg.device, env)
    micro, accum = distributed.batch_plan(cfg.batch_size, cfg.micro_batch_size, env.world_size)
    n_micro = accum * env.world_size  # micro-batches per optimizer step, over all ranks
    if distributed.active():
        log.info("%d processes (%s): batch %d = micro-batch %d x accumulation %d x %d processes",
                 env.world_size, cfg.strategy, cfg.batch_size, micro, accum, env.world_size)
    step, tokens_seen, window, best = 0, 0, [0.0, 0], -math.inf
    train_seconds = 0.0  # time spent in optimizer steps (no evaluation, no checkpoints), over all sessions
    found = distributed.broadcast(ckpt.latest_checkpoint(run_dir) if resume and env.is_main else None)
    if resume and found is None:
        log.info("no checkpoint in %s yet: starting from step 0", run_dir)
    if found is not None:
        if not found.is_dir():
            raise GenptError(f"{found}: rank {env.rank} cannot see rank 0's checkpoint; resuming on several "
                             "nodes needs the run folder on a file system that all of them share")
        ckpt.load_weights(model, found)  # before sharding: every rank loads the full tensors, then keeps its part
        state = ckpt.read_state(found)
        ckpt.restore_rng(state["rng"])
        step, tokens_seen, window = state["step"], state["tokens_seen"], state["log_window"]
        best = state.get("best", best)
        train_seconds = state.get("train_seconds", 0.0)
        log.info("resumed from %s (step %d, %d tokens seen)", found, step, tokens_seen)
    model.to(device)
    apply_backends(model, cfg.kernels, cfg.float8, device)  # fused kernels, float8: before wrapping and compiling
    if cfg.activation_checkpointing:
        distributed.checkpoint_blocks(model)
    wrapped = distributed.wrap(model, device, cfg.strategy, bf16=cfg.dtype == "bfloat16")
    optimizer = make_optimizer(wrapped, cfg, device)
    if found is not None:
        ckpt.load_optimizer(optimizer, found, wrapped)
    parameters = list(wrapped.parameters())
    metrics = MetricsLog(run_dir, resume_step=step if resume else None) if env.is_main else _NoMetrics()
    forward = torch.compile(wrapped, mode=cfg.compile_mode) if cfg.compile else wrapped
    # Evaluation runs the bare model under DDP (no gradient hooks); under FSDP the model is the wrapper.
    evaluate_with = forward if wrapped is model else (torch.compile(model, mode=cfg.compile_mode) if cfg.compile
                                                      else model)
    bar = _Progress(step, total_steps, progress and env.is_main)
    started, last_log_time, last_log_tokens = time.monotonic(), time.monotonic(), tokens_seen
    last_eval: dict[str, float] = {}
    saved: Path | None = found  # the last checkpoint this rank knows to be complete
    stopped_early = False

    def save() -> None:
        """Write checkpoint `step` (rank 0; a collective under FSDP); on return every rank knows it is complete."""
        nonlocal saved
        weights, optim = ckpt.full_state(model, optimizer)
        if env.is_main:
            state = {"tokens_seen": tokens_seen, "log_window": window, "best": best, "train_seconds": train_seconds}
            saved = ckpt.save_checkpoint(run_dir, step, weights, optim, state, config=task.checkpoint_config,
                                         tokenizer_json=task.tokenizer_json, keep=cfg.keep_checkpoints)
        distributed.all_sum([0.0], device)  # a barrier: rank 0 has renamed the checkpoint into place
        saved = run_dir / ckpt.CHECKPOINTS / f"step_{step:08d}"

    synced_step = step  # the last step whose losses and tokens were gathered and reported
    window_loss = torch.zeros((), device=device, dtype=torch.float64)  # this rank's losses since the last log
    window_tokens = 0
    try:
        while step < total_steps:
            step_started = time.monotonic()
            lr = learning_rate(step, peak=cfg.lr, warmup=cfg.warmup_steps, total=total_steps,
                               schedule=cfg.lr_schedule, floor=cfg.min_lr)
            set_learning_rate(optimizer, lr)
            wrapped.train()
            first = step * n_micro + env.rank * accum
            for i in range(accum):
                batch = to_device(task.micro_batch(first + i), device)
                torch.manual_seed(micro_seed(cfg.seed, first + i))
                with distributed.gradient_sync(forward, i == accum - 1):  # all-reduce on the last only
                    with autocast_for(device, cfg.dtype):
                        loss = task.loss(forward, batch)
                    (loss / accum).backward()
                window_loss += loss.detach()
                window_tokens += task.tokens(batch)
            grad_norm = distributed.clip_gradients(parameters, cfg.grad_clip) if cfg.grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # The host waits for the device (and the ranks for each other) only where something is
            # reported, evaluated or saved; in between, steps are queued back to back.
            evaluating = task.evaluate is not None and (step % cfg.eval_interval == 0 or step == total_steps)
            saving = step % cfg.checkpoint_interval == 0 or step == total_steps
            logged = step % cfg.log_interval == 0 or step == total_steps or evaluating or saving
            timed_out = False
            stats: dict[str, float] = {}
            if logged:
                late = cfg.max_minutes > 0 and time.monotonic() - started >= cfg.max_minutes * 60
                loss_sum, tokens, late_ranks = distributed.all_sum(
                    [window_loss.item(), window_tokens, float(late)], device)
                window_loss.zero_()
                window_tokens = 0
                tokens_seen += int(tokens)
                timed_out = late_ranks > 0  # every rank stops at the same step, as soon as any is out of time
                window = [window[0] + loss_sum / n_micro, window[1] + step - synced_step]
                synced_step = step
                now = time.monotonic()
                train_seconds += now - step_started
                stats = {"loss": window[0] / window[1], "lr": lr,
                         "tokens_per_s": (tokens_seen - last_log_tokens) / max(now - last_log_time, 1e-9)}
                if grad_norm is not None:
                    stats["grad_norm"] = grad_norm.item()
                metrics.write(step, "train", **stats, tokens=tokens_seen, train_seconds=round(train_seconds, 3))
                if not math.isfinite(stats["loss"]):
                    raise GenptError(f"training diverged at step {step} (loss {stats['loss']}); lower train.lr")
                last_log_time, last_log_tokens, window = now, tokens_seen, [0.0, 0]
            else:
                train_seconds += time.monotonic() - step_started
            bar.update(step, total_steps, stats, logged)
            if evaluating or (timed_out and task.evaluate is not None):
                last_eval = _evaluate(wrapped, evaluate_with, task, device, cfg)
                metrics.write(step, "val", **last_eval)
                bar.message(f"step {step}: " + "  ".join(f"val {k} {v:.4f}" for k, v in last_eval.items()))
                if task.best_metric is not None and last_eval[task.best_metric] > best:
                    best = last_eval[task.best_metric]
                    weights, _ = ckpt.full_state(model, None)
                    if env.is_main:
                        ckpt.write_checkpoint(run_dir / ckpt.BEST, weights, None,
                                              {"step": step, "metrics": last_eval}, config=task.checkpoint_config,
                                              tokenizer_json=task.tokenizer_json)
            if saving or timed_out:
                save()
            if timed_out:
                stopped_early = step < total_steps
                bar.message(f"stopping after {cfg.max_minutes:g} minutes at step {step}")
                break
    except KeyboardInterrupt:
        if ckpt.is_sharded(wrapped):  # gathering the shards needs every rank, which may be gone
            bar.message(f"interrupted at step {step}; sharded runs resume from the last checkpoint, {saved}")
        else:
            bar.message(f"interrupted: saving step {step} so that --resume continues from it")
            # Fold in the steps since the last report (this rank's share, scaled to the job).
            tokens_seen += window_tokens * env.world_size
            window = [window[0] + window_loss.item() / accum, window[1] + step - synced_step]
            if env.is_main:
                state = {"tokens_seen": tokens_seen, "log_window": window, "best": best,
                         "train_seconds": train_seconds}
                ckpt.save_checkpoint(run_dir, step, model, optimizer, state, config=task.checkpoint_config,
                                     tokenizer_json=task.tokenizer_json, keep=cfg.keep_checkpoints)
        raise
    except Exception as e:
        if distributed.active() and distributed.is_comm_failure(e):
            raise distributed.lost_contact(e, env, cfg.collective_timeout, saved) from e
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
