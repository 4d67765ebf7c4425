"""What genpt will run on this machine for a model, and why: the CPU, its product ceilings, the kernel
each fast path chose (with the times that chose it) and bf16 autocast against float32.

One training step of the model in each precision makes every fast path meet the signatures a run
meets; the selector measures those it has not seen on this CPU (genpt.kernels.select) and caches them,
so a later run starts with its choices made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genpt.config import ModelConfig
from genpt.kernels import measure, select
from genpt.model import GPT

DTYPES = ("float32", "bfloat16")


@dataclass
class Diagnosis:
    cpu: dict[str, str]
    threads: int
    ceilings: dict[str, float]  # GFLOP/s by product path
    setting: str  # GENPT_KERNELS's mode and forced entries
    cache_file: str
    kernels: dict[str, dict[str, select.Choice]]  # dtype -> "path|signature" -> choice
    dtype: select.Choice  # bf16 autocast or float32, from the model's products


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
    products = select.model_products(model.n_embd, model.inner_dim, model.padded_vocab_size, batch * model.n_ctx)
    setting = ",".join([sel.mode, *(f"{k}={v}" for k, v in sel.forced.items())])
    return Diagnosis(measure.cpu_identity(), torch.get_num_threads(), measure.product_ceilings(), setting,
                     str(sel.cache.file), kernels, select.best_dtype(products))


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
            lines.append(f"  {path:<10}{choice.chosen:<13}{times or choice.reason}  [{sig}]")
    times = ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in d.dtype.seconds.items())
    lines.append(f"\nprecision for training: {d.dtype.chosen} ({times or d.dtype.reason}: the model's products, "
                 f"forward and backward; bf16 only when {select.best_dtype.__kwdefaults__['margin']:g}x faster)")
    return "\n".join(lines)


__all__ = ["Diagnosis", "diagnose", "format_diagnosis"]
