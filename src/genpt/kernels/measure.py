"""What the CPU is and how fast it multiplies matrices: the facts a kernel choice rests on.

Two CPUs with the same flags can rank the same kernels differently (MKL's AVX2 path on AMD, AMX bf16
products 7x faster than float32 on one Xeon, avx512_bf16 without AMX twice slower on another), so
nothing here predicts: it names the CPU (the key of every cached choice) and times products.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable

import torch

# The instruction-set flags that decide which product kernels a CPU has (printed, never used to choose).
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_identity() -> dict[str, str]:
    """The CPU's name, vendor family/model numbers and product-relevant flags, from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"name": fields.get("model name") or platform.processor() or "unknown",
            "family": fields.get("cpu family", "?"), "model": fields.get("model", "?"),
            "flags": " ".join(flag for flag in FLAGS if flag in flags)}


def machine_key() -> str:
    """The key of a cached measurement: CPU name and model number, and the PyTorch version."""
    cpu = cpu_identity()
    name = re.sub(r"[^a-z0-9]+", "-", cpu["name"].lower()).strip("-")
    return f"{name}-f{cpu['family']}m{cpu['model']}-torch{torch.__version__}"


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """The median wall time of `fn()` over `repeats` calls after `warmup` unmeasured ones."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def product_ceilings(m: int = 2048, k: int = 1536, n: int = 384, repeats: int = 7) -> dict[str, float]:
    """GFLOP/s of an (m x k) @ (k x n) product by each CPU path: float32 by PyTorch's default (MKL) and by
    oneDNN, and bfloat16 (oneDNN; AMX where the CPU has it). The three are timed in turns."""
    a32, b32 = torch.randn(m, k), torch.randn(n, k)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    paths: dict[str, Callable[[], object]] = {"fp32 MKL": lambda: torch.mm(a32, b32.T),
                                              "bf16": lambda: torch.mm(a16, b16.T)}
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        paths["fp32 oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a32, b32, None, "none", [], "")
    times: dict[str, list[float]] = {name: [] for name in paths}
    for fn in paths.values():  # warm-up: oneDNN builds its kernel on the first call
        fn(), fn()
    for _ in range(repeats):
        for name, fn in paths.items():
            times[name].append(median_seconds(fn, repeats=1, warmup=0))
    return {name: 2 * m * k * n / statistics.median(t) / 1e9 for name, t in times.items()}


__all__ = ["FLAGS", "cpu_identity", "machine_key", "median_seconds", "product_ceilings"]
