"""What genpt will run on this machine for a model, and why: the CPU, its product ceilings, the kernel
each fast path chose (with the times that chose it) and bf16 autocast against float32, timed as
`train.dtype=auto` times it (genpt.train.precision: the model's own training step, in turns).

One training step of the model in each precision makes every fast path meet the signatures a run
meets; the selector measures those it has not seen on this CPU (genpt.kernels.select) and caches them,
so a later run starts with its choices made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from genpt.config import ModelConfig, TrainConfig
from genpt.kernels import measure, select
from genpt.model import GPT
from genpt.train import host_memory, precision

DTYPES = ("float32", "bfloat16")
DTYPE_SECONDS = 5.0  # of timed training steps, bf16 against float32 (a run's auto choice times 20)


@dataclass
class Diagnosis:
    cpu: dict[str, str]
    threads: int
    ceilings: dict[str, float]  # GFLOP/s by product path
    setting: str  # GENPT_KERNELS's mode and forced entries
    cache_file: str
    kernels: dict[str, dict[str, select.Choice]]  # dtype -> "path|signature" -> choice
    dtype: select.Choice  # bf16 autocast or float32, from the model's training step
    page_faults: dict[str, int]  # of a float32 training step: "system" (malloc as is), "keep" (freed blocks kept)


def diagnose(model: ModelConfig, batch: int, remeasure: bool = False) -> Diagnosis:
    """Run one training step of `model` at `batch` sequences in each precision, and gather what ran;
    `remeasure` forgets this CPU's cached choices first."""
    sel = select.selector()
    sel.forget(cache=remeasure)
    ids = torch.randint(0, model.vocab_size, (batch, model.n_ctx))
    kernels: dict[str, dict[str, select.Choice]] = {}
    for dtype in DTYPES:
        sel.used.clear()
        net = GPT(model).train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = net(ids, labels=ids, return_logits=False).loss
        loss.backward()
        kernels[dtype] = dict(sel.used)
    # Built with malloc as it is, so that its first steps can count the faults keeping freed memory saves.
    step = precision.train_step_timer(model, TrainConfig(batch_size=batch, host_memory="system"), torch.device("cpu"))
    faults = page_faults(step)
    times = precision.step_times(step, DTYPE_SECONDS)
    setting = ",".join([sel.mode, *(f"{k}={v}" for k, v in sel.forced.items())])
    return Diagnosis(measure.cpu_identity(), torch.get_num_threads(), measure.product_ceilings(), setting,
                     str(sel.cache.file), kernels, select.Choice(precision.faster(times), times), faults)


def page_faults(step: Callable[[str], float]) -> dict[str, int]:
    """Page faults of a float32 training step (`step`, precision.train_step_timer's) with malloc as it is,
    then with freed blocks kept (which stays so for the rest of this process, as in a training run);
    "system" alone where malloc cannot keep them, and nothing to compare where this process already keeps
    them."""
    if host_memory.kept():
        return {}
    faults = {"system": host_memory.faults_of(lambda: step("float32"))}
    if host_memory.keep_freed_memory():
        faults["keep"] = host_memory.faults_of(lambda: step("float32"), repeats=3)
    return faults


def format_diagnosis(d: Diagnosis) -> str:
    ceilings = ", ".join(f"{name} {gflops:,.0f}" for name, gflops in d.ceilings.items())
    lines = [f"CPU: {d.cpu['name']} (family {d.cpu['family']} model {d.cpu['model']}; flags: {d.cpu['flags']}), "
             f"{d.threads} threads, torch {torch.__version__}",
             f"product ceilings (2048 x 1536 x 384), GFLOP/s: {ceilings}",
             f"GENPT_KERNELS={d.setting}; choices cached in {d.cache_file}"]
    for dtype, used in d.kernels.items():
        lines.append(f"\n{'bf16 autocast' if dtype == 'bfloat16' else 'float32'}:")
        for key, choice in used.items():
            path, _, sig = key.partition("|")
            times = ", ".join(f"{name} {s * 1e3:.2f} ms" for name, s in choice.seconds.items())
            if times:
                times += f" (load {choice.load:.1f} a core)"
            lines.append(f"  {path:<10}{choice.chosen:<15}{times or choice.reason}  [{sig}]")
    times = ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in d.dtype.seconds.items())
    lines.append(f"\nprecision for training (train.dtype=auto): {d.dtype.chosen} ({times or d.dtype.reason}: a "
                 f"training step of the model, medians; bf16 only when {precision.MARGIN:g}x faster)")
    lines.append(host_memory_line(d.page_faults))
    return "\n".join(lines)


def host_memory_line(faults: dict[str, int]) -> str:
    def pages(n: int) -> str:
        return f"{n:,} pages ({n * 4096 / 2**20:,.0f} MiB)"

    if not faults:
        return "host memory (train.host_memory=keep): freed blocks already kept in this process; nothing to compare"
    if "keep" not in faults:
        return (f"host memory: a float32 training step faulted {pages(faults['system'])}; this C library has no "
                "mallopt, so freed blocks go back to the system (train.host_memory=keep does nothing here)")
    return (f"host memory (train.host_memory=keep): a float32 training step faulted {pages(faults['system'])} with "
            f"malloc as it is, {pages(faults['keep'])} with freed blocks kept in the process")


__all__ = ["Diagnosis", "diagnose", "format_diagnosis"]
