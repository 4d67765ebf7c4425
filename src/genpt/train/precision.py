"""bf16 autocast or float32 for a training step, chosen by timing the run's own step on its device.

A CPU flag does not tell: with AMX a bf16 product can run 7x faster than float32, with only
avx512_bf16 it can run at half the speed, and a short probe on shared cores is noise. So both are
timed in alternating rounds (machine drift hits both alike) for a few seconds each, and bf16 is
taken only when its median step is clearly faster. The choice is kept beside the kernels' (genpt.kernels.select's
cache: one file per CPU model and PyTorch version), keyed by the step's shape, optimizer and threads, so
a second run of the same model on the same machine does not time it again; `genpt doctor --remeasure`
forgets it with the kernels' choices.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import torch

from genpt.architectures import build_model
from genpt.config import ModelConfig, TrainConfig
from genpt.kernels import select
from genpt.train import host_memory
from genpt.train.loop import autocast_for
from genpt.train.optimizers import make_optimizer

log = logging.getLogger("genpt")

DTYPES = ("float32", "bfloat16")


def time_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, dtype: str) -> float:
    """Wall-clock seconds of one language-model training step on `ids` (forward, backward, optimizer step),
    in float32 or bf16 autocast; the unit both this choice and bench/cpu_recipe.py's throughput time."""
    start = time.perf_counter()
    with autocast_for(ids.device, dtype):
        loss = model(ids, labels=ids, return_logits=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


MARGIN = 1.05  # bf16 is taken only when its median step is at least this much faster


def step_times(step_seconds: Callable[[str], float], seconds: float, *, min_rounds: int = 2) -> dict[str, float]:
    """Median seconds a step of each dtype: timed steps alternate until `seconds` of them are measured (the
    first round discarded as warm-up), so a busy spell on shared cores hits both alike."""
    times: dict[str, list[float]] = {dtype: [] for dtype in DTYPES}
    rounds = measured = 0
    while rounds < min_rounds + 1 or measured < seconds:
        for dtype in DTYPES:
            elapsed = step_seconds(dtype)
            if rounds:
                times[dtype].append(elapsed)
                measured += elapsed
        rounds += 1
    return {dtype: statistics.median(t) for dtype, t in times.items()}


def faster(times: dict[str, float], margin: float = MARGIN) -> str:
    return "bfloat16" if times["float32"] >= margin * times["bfloat16"] else "float32"


def timed_choice(step_seconds: Callable[[str], float], seconds: float, *, min_rounds: int = 2,
                 margin: float = MARGIN) -> tuple[str, dict[str, float]]:
    """float32 or bf16 autocast, whichever `step_seconds` times faster (bf16 by at least `margin`), and the
    median step times that decided it."""
    times = step_times(step_seconds, seconds, min_rounds=min_rounds)
    choice = faster(times, margin)
    log.info("step time: float32 %.3f s, bf16 autocast %.3f s (medians): %s", times["float32"], times["bfloat16"],
             choice)
    return choice, times


def pick_faster(step_seconds: Callable[[str], float], seconds: float, *, min_rounds: int = 2,
                margin: float = MARGIN) -> str:
    """float32 or bf16 autocast, whichever `step_seconds` times faster (bf16 by at least `margin`)."""
    return timed_choice(step_seconds, seconds, min_rounds=min_rounds, margin=margin)[0]


def train_step_timer(model_config: ModelConfig, cfg: TrainConfig, device: torch.device) -> Callable[[str], float]:
    """Seconds of one training step of this model (of `model_config.arch`: an LSTM's step is not a
    Transformer's) with `cfg`'s optimizer and micro-batch, in the dtype given."""
    host_memory.apply(cfg.host_memory, device.type)  # timed as the run will train
    torch.manual_seed(0)
    model = build_model(model_config).to(device).train()
    optimizer = make_optimizer(model, cfg, device)
    ids = torch.randint(0, model_config.vocab_size, (cfg.micro_batch, model_config.n_ctx), device=device)
    return lambda dtype: time_train_step(model, optimizer, ids, dtype)


def step_key(model_config: ModelConfig, cfg: TrainConfig) -> str:
    """What a training step's precision choice depends on, as a cache key: the model's shape and dropout,
    the micro-batch, the optimizer and the threads sharing the work."""
    m = model_config
    shape = f"{m.arch},{m.n_layer}x{m.n_embd}/{m.n_head},lstm{m.lstm_hidden},ctx{m.n_ctx},vocab{m.padded_vocab_size}"
    dropout = f"drop{m.embd_pdrop:g}/{m.attn_pdrop:g}/{m.resid_pdrop:g}"
    return f"dtype|{shape},{dropout},batch{cfg.micro_batch},{cfg.optimizer},threads{torch.get_num_threads()}"


def choose_dtype(model_config: ModelConfig, cfg: TrainConfig, device: torch.device, seconds: float = 20.0) -> str:
    """The faster of float32 and bf16 autocast for this model's training step on `device`: timed once per
    CPU, PyTorch version and step (GENPT_KERNELS=measure, the default; in its other modes timed each time)."""
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type != "cpu":
        return "float32"
    selector = select.selector()
    if selector.mode != "measure":
        return pick_faster(train_step_timer(model_config, cfg, device), seconds)
    key = step_key(model_config, cfg)
    known = selector.cache.get(key)
    if not select.stale(known) and known.chosen in DTYPES:
        log.info("step precision %s, measured before on this CPU (float32 %.3f s, bf16 autocast %.3f s; "
                 "`genpt doctor --remeasure` times it again)", known.chosen, known.seconds.get("float32", 0.0),
                 known.seconds.get("bfloat16", 0.0))
        return known.chosen
    choice, times = timed_choice(train_step_timer(model_config, cfg, device), seconds)
    selector.cache.put(key, select.Choice(choice, times, load=select.load_per_core()))
    return choice
