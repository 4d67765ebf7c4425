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
import signal
import sys
import threading
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
from genpt.config import TrainConfig
from genpt.errors import GenptError, Interrupted
from genpt.kernels import preferred_attention_kernels
from genpt.kernels.backends import apply_backends
from genpt.train import distributed, host_memory
from genpt.train.metrics_log import MetricsLog
from genpt.train.optimizers import make_optimizer, set_learning_rate
from genpt.train.schedule import Budget, learning_rate

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
    # False: no checkpoint by step, time or at the end (best/ alone is kept); one is still saved when a signal
    # stops the run, so that --resume continues it.
    resume_checkpoints: bool = True


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
    clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Run optimizer steps until `total_steps` (or `cfg.max_minutes`), checkpointing as configured.

    With a time budget the schedule follows the share of the time used (`Budget`), read from `clock`.

    Under torchrun this runs on every rank, each on its slice of every batch; only rank 0 writes.
    With FSDP `model` is sharded in place and is usable only inside the process group afterwards.
    """
    with preferred_attention_kernels(cfg.attention_kernel), \
            distributed.process_group(cfg.device, cfg.collective_timeout) as env:
        return _train(model, cfg, task, Path(run_dir), env, total_steps=total_steps, resume=resume,
                      progress=progress, clock=clock)


def micro_seed(seed: int, index: int) -> int:
    """The RNG seed for micro-batch `index` (its dropout masks), the same on whichever rank runs it."""
    return int(np.random.SeedSequence([seed % 2**64, index]).generate_state(1)[0])


class _StopRequest:
    """SIGTERM (what schedulers send before pre-empting) or a first Ctrl-C asks the loop to stop at the end
    of the current step, after its metrics, evaluation and a checkpoint; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signum = 0
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.signum:
            self.signum = signum
            log.info("%s: stopping after this step, with a checkpoint", signal.Signals(signum).name)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _NoMetrics:
    """What ranks other than 0 log to."""

    def write(self, step: int, split: str, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _Counters:
    """Where a run stands: what a checkpoint's state.json carries besides the step and RNG states."""

    step: int = 0
    tokens_seen: int = 0
    window: list = field(default_factory=lambda: [0.0, 0])  # logged loss sum and steps since the last report
    best: float = -math.inf  # the best validation value of TrainTask.best_metric so far
    train_seconds: float = 0.0  # time spent in optimizer steps (no evaluation, no checkpoints), over all sessions
    budget_seconds: float = 0.0  # wall-clock time counted against train.max_minutes, over all sessions

    def state(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen, "log_window": self.window, "best": self.best,
                "train_seconds": self.train_seconds, "budget_seconds": self.budget_seconds}


def _resume(model: nn.Module, run_dir: Path, env: distributed.Env, resume: bool) -> tuple[Path | None, _Counters]:
    """The checkpoint to continue from (its weights loaded into `model`, its RNG states restored), or None."""
    found = distributed.broadcast(ckpt.latest_intact(run_dir, report=False) if resume and env.is_main else None)
    if resume and found is None:
        log.info("no checkpoint in %s yet: starting from step 0", run_dir)
    if found is None:
        return None, _Counters()
    if not found.is_dir():
        raise GenptError(f"{found}: rank {env.rank} cannot see rank 0's checkpoint; resuming on several "
                         "nodes needs the run folder on a file system that all of them share")
    ckpt.load_weights(model, found)  # before sharding: every rank loads the full tensors, then keeps its part
    state = ckpt.read_state(found)
    ckpt.restore_rng(state["rng"])
    counters = _Counters(state["step"], state["tokens_seen"], state["log_window"], state.get("best", -math.inf),
                         state.get("train_seconds", 0.0), state.get("budget_seconds", 0.0))
    log.info("resumed from %s (step %d, %d tokens seen)", found, counters.step, counters.tokens_seen)
    return found, counters


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
    clock: Callable[[], float],
) -> TrainResult:
    device = distributed.resolve_device(cfg.device, env)
    micro, accum = distributed.batch_plan(cfg.batch_size, cfg.micro_batch_size, env.world_size)
    if distributed.active():
        log.info("%d processes (%s): batch %d = micro-batch %d x accumulation %d x %d processes",
                 env.world_size, cfg.strategy, cfg.batch_size, micro, accum, env.world_size)
    found, run = _resume(model, run_dir, env, resume)
    model.to(device)
    host_memory.apply(cfg.host_memory, device.type)
    apply_backends(model, cfg.kernels, cfg.float8, device)  # fused kernels, float8: before wrapping and compiling
    if cfg.activation_checkpointing:
        distributed.checkpoint_blocks(model)
    wrapped = distributed.wrap(model, device, cfg.strategy, bf16=cfg.dtype == "bfloat16")
    optimizer = make_optimizer(wrapped, cfg, device)
    if found is not None:
        ckpt.load_optimizer(optimizer, found, wrapped)
    session = _Session(model, wrapped, optimizer, cfg, task, run_dir, env, device, accum, total_steps, run, found,
                       resume, progress, clock)
    try:
        session.train_steps()
    except KeyboardInterrupt:
        session.save_interrupted()
        raise
    except Exception as e:
        if distributed.active() and distributed.is_comm_failure(e):
            raise distributed.lost_contact(e, env, cfg.collective_timeout, session.saved) from e
        raise
    finally:
        session.close()
    return TrainResult(run.step, run.tokens_seen, time.monotonic() - session.started, session.last_eval,
                       session.saved, session.stopped_early)


class _Session:
    """One process's part of a training session, from the first step to the last or the stop."""

    def __init__(self, model: nn.Module, wrapped: nn.Module, optimizer, cfg: TrainConfig, task: TrainTask,
                 run_dir: Path, env: distributed.Env, device: torch.device, accum: int, total_steps: int,
                 run: _Counters, found: Path | None, resume: bool, progress: bool, clock: Callable[[], float]):
        self.model, self.wrapped, self.optimizer, self.cfg, self.task = model, wrapped, optimizer, cfg, task
        self.run_dir, self.env, self.device, self.accum, self.total_steps, self.run = (
            run_dir, env, device, accum, total_steps, run)
        self.n_micro = accum * env.world_size  # micro-batches per optimizer step, over all ranks
        self.parameters = list(wrapped.parameters())
        self.metrics = MetricsLog(run_dir, resume_step=run.step if resume else None) if env.is_main else _NoMetrics()
        self.forward = torch.compile(wrapped, mode=cfg.compile_mode) if cfg.compile else wrapped
        # Evaluation runs the bare model under DDP (no gradient hooks); under FSDP the model is the wrapper.
        self.evaluate_with = self.forward if wrapped is model else (
            torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model)
        self.bar = _Progress(run.step, total_steps, progress and env.is_main)
        self.started = self.last_log_time = time.monotonic()
        self.last_log_tokens = run.tokens_seen
        self.last_eval: dict[str, float] = {}
        self.saved: Path | None = found  # the last checkpoint this rank knows to be complete
        self.stopped_early = False
        self.synced_step = run.step  # the last step whose losses and tokens were gathered and reported
        self.window_loss = torch.zeros((), device=device, dtype=torch.float64)  # this rank's losses since then
        self.window_tokens = 0
        self.last_save = time.monotonic()
        self.stop = _StopRequest()
        self.alone = not distributed.active()  # one process checks every step; ranks agree where they sync anyway
        # The schedule's position: the step count, or further where the time budget has been used faster.
        self.clock, self.session_clock, self.session_step = clock, clock(), run.step
        self.budget = Budget(total_steps, cfg.max_minutes * 60)
        self.budget.sync(run.step, run.budget_seconds, 0.0)
        self.budget_before = run.budget_seconds

    def train_steps(self) -> None:
        cfg, run, total, budget = self.cfg, self.run, self.total_steps, self.budget
        while not budget.done(run.step):
            step_started = time.monotonic()
            lr = learning_rate(budget.position(run.step), peak=cfg.lr, warmup=cfg.warmup, total=total,
                               schedule=cfg.lr_schedule, floor=cfg.min_lr)
            grad_norm = self.optimizer_step(lr)
            # The host waits for the device (and the ranks for each other) only where something is
            # reported, evaluated or saved; in between, steps are queued back to back.
            evaluating = self.task.evaluate is not None and run.step % cfg.eval_interval == 0
            saving = self.task.resume_checkpoints and run.step % cfg.checkpoint_interval == 0
            logged = run.step % cfg.log_interval == 0 or budget.done(run.step) or evaluating or saving
            # With a time budget the pace is also read at this session's steps 1, 2, 4, 8, ...: on a slow or
            # busy machine the first log interval may already be more than the budget.
            session_steps = run.step - self.session_step
            if budget.seconds > 0 and not logged and session_steps & (session_steps - 1) == 0:
                (elapsed,) = distributed.all_sum([self.clock() - self.session_clock], self.device)
                self.sync_budget(elapsed)
            timed_out = False
            stats: dict[str, float] = {}
            due = (self.task.resume_checkpoints and cfg.checkpoint_minutes > 0
                   and time.monotonic() - self.last_save >= cfg.checkpoint_minutes * 60)
            stopping = self.alone and self.stop.signum > 0
            saving = saving or (self.alone and due)
            if logged:
                stats, timed_out, due_ranks, stop_ranks = self.report(lr, grad_norm, step_started, due)
                saving, stopping = saving or due_ranks, stopping or stop_ranks
            else:
                run.train_seconds += time.monotonic() - step_started
            self.bar.update(run.step, total, stats, logged)
            if evaluating or (timed_out and self.task.evaluate is not None):
                self.evaluate()
            if (saving or stopping) and not logged:  # one process, between reports: fold them into the saved state
                self.fold_window()
            if saving or (timed_out and self.task.resume_checkpoints) or stopping:
                self.save()
            if stopping:
                signum = self.stop.signum or signal.SIGTERM  # another rank's signal
                raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} after step {run.step}, saved "
                                          f"in {self.saved}; continue with --resume")
            if timed_out:
                self.stopped_early = run.step < total
                budget_spent = f"after {cfg.max_minutes:g} minutes " if cfg.max_minutes > 0 else ""
                self.bar.message(f"stopping {budget_spent}at step {run.step}, its schedule complete")
                break

    def sync_budget(self, elapsed_sum: float) -> None:
        """The time budget used, from the ranks' summed session times (their mean, the same on every rank)."""
        elapsed = elapsed_sum / self.env.world_size
        self.run.budget_seconds = self.budget_before + elapsed
        self.budget.sync(self.run.step, self.run.budget_seconds, elapsed / max(1, self.run.step - self.session_step))

    def optimizer_step(self, lr: float) -> torch.Tensor | None:
        """This rank's micro-batches of one step, then the update; the gradient norm when clipping."""
        cfg, run = self.cfg, self.run
        set_learning_rate(self.optimizer, lr)
        self.wrapped.train()
        first = run.step * self.n_micro + self.env.rank * self.accum
        for i in range(self.accum):
            batch = to_device(self.task.micro_batch(first + i), self.device)
            torch.manual_seed(micro_seed(cfg.seed, first + i))
            with distributed.gradient_sync(self.forward, i == self.accum - 1):  # all-reduce on the last only
                with autocast_for(self.device, cfg.dtype):
                    loss = self.task.loss(self.forward, batch)
                (loss / self.accum).backward()
            self.window_loss += loss.detach()
            self.window_tokens += self.task.tokens(batch)
        grad_norm = distributed.clip_gradients(self.parameters, cfg.grad_clip) if cfg.grad_clip > 0 else None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        run.step += 1
        return grad_norm

    def report(self, lr: float, grad_norm: torch.Tensor | None, step_started: float,
               due: bool) -> tuple[dict[str, float], bool, bool, bool]:
        """Gather the ranks' losses and tokens since the last report, log them; and whether, on any rank, time
        is up, a time-based checkpoint is due, or a stop was asked for (all ranks then act at this step)."""
        run = self.run
        loss_sum, tokens, elapsed, due_ranks, stop_ranks = distributed.all_sum(
            [self.window_loss.item(), self.window_tokens, self.clock() - self.session_clock, float(due),
             float(self.stop.signum > 0)], self.device)
        self.sync_budget(elapsed)
        self.window_loss.zero_()
        self.window_tokens = 0
        run.tokens_seen += int(tokens)
        run.window = [run.window[0] + loss_sum / self.n_micro, run.window[1] + run.step - self.synced_step]
        self.synced_step = run.step
        now = time.monotonic()
        run.train_seconds += now - step_started
        stats = {"loss": run.window[0] / run.window[1], "lr": lr,
                 "tokens_per_s": (run.tokens_seen - self.last_log_tokens) / max(now - self.last_log_time, 1e-9)}
        if grad_norm is not None:
            stats["grad_norm"] = grad_norm.item()
        self.metrics.write(run.step, "train", **stats, tokens=run.tokens_seen,
                           train_seconds=round(run.train_seconds, 3))
        if not math.isfinite(stats["loss"]):
            raise GenptError(f"training diverged at step {run.step} (loss {stats['loss']}); lower train.lr")
        self.last_log_time, self.last_log_tokens, run.window = now, run.tokens_seen, [0.0, 0]
        return stats, self.budget.done(run.step), due_ranks > 0, stop_ranks > 0

    def fold_window(self) -> None:
        """One process between reports: its unreported steps go into the saved state, as a report would add them,
        so a resumed run's next report is the uninterrupted run's."""
        run = self.run
        run.tokens_seen += self.window_tokens
        run.window = [run.window[0] + self.window_loss.item() / self.accum, run.window[1] + run.step - self.synced_step]
        self.synced_step, self.window_tokens = run.step, 0
        self.window_loss.zero_()

    def evaluate(self) -> None:
        """Validation metrics, logged; the best so far by TrainTask.best_metric written to best/."""
        run, task = self.run, self.task
        self.last_eval = _evaluate(self.wrapped, self.evaluate_with, task, self.device, self.cfg)
        self.metrics.write(run.step, "val", **self.last_eval)
        self.bar.message(f"step {run.step}: " + "  ".join(f"val {k} {v:.4f}" for k, v in self.last_eval.items()))
        if task.best_metric is not None and self.last_eval[task.best_metric] > run.best:
            run.best = self.last_eval[task.best_metric]
            weights, _ = ckpt.full_state(self.model, None)
            if self.env.is_main:
                ckpt.write_checkpoint(self.run_dir / ckpt.BEST, weights, None,
                                      {"step": run.step, "metrics": self.last_eval}, config=task.checkpoint_config,
                                      tokenizer_json=task.tokenizer_json)

    def save(self) -> None:
        """Write checkpoint `step` (rank 0; a collective under FSDP); on return every rank knows it is complete."""
        weights, optim = ckpt.full_state(self.model, self.optimizer)
        if self.env.is_main:
            self._write(weights, optim)
        distributed.all_sum([0.0], self.device)  # a barrier: rank 0 has renamed the checkpoint into place
        self.saved = self.run_dir / ckpt.CHECKPOINTS / f"step_{self.run.step:08d}"
        self.last_save = time.monotonic()

    def save_interrupted(self) -> None:
        """After Ctrl-C: this rank's steps since the last report folded in, and the step saved where possible."""
        run = self.run
        if ckpt.is_sharded(self.wrapped):  # gathering the shards needs every rank, which may be gone
            self.bar.message(f"interrupted at step {run.step}; sharded runs resume from the last checkpoint, "
                             f"{self.saved}")
            return
        self.bar.message(f"interrupted: saving step {run.step} so that --resume continues from it")
        run.tokens_seen += self.window_tokens * self.env.world_size  # this rank's share, scaled to the job
        run.window = [run.window[0] + self.window_loss.item() / self.accum,
                      run.window[1] + run.step - self.synced_step]
        if self.env.is_main:
            self._write(self.model, self.optimizer)

    def _write(self, weights, optim) -> Path:
        return ckpt.save_checkpoint(self.run_dir, self.run.step, weights, optim, self.run.state(),
                                    config=self.task.checkpoint_config, tokenizer_json=self.task.tokenizer_json,
                                    keep=self.cfg.keep_checkpoints)

    def close(self) -> None:
        self.stop.restore()
        self.bar.close()
        self.metrics.close()


def _evaluate(model: nn.Module, forward: nn.Module, task: TrainTask, device, cfg: TrainConfig) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), autocast_for(device, cfg.dtype):
        result = task.evaluate(forward)
    model.train()
    return result
