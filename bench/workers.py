"""What the benchmark scripts share: each implementation in its own subprocess, the machine it ran on, and
ratios of steps timed in turns.

Every result is printed with the CPU's name, its product-relevant flags, the measured matrix-product
ceilings (float32 by MKL and by oneDNN, bfloat16) and the load average: which kernel wins, and by how
much, depends on all of them (docs/performance.md keeps a table per CPU).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys


def run_worker(cmd: list[str], name: str, env: dict[str, str] | None = None) -> dict:
    """Run a worker command; its last stdout line is its JSON result. A failed worker stops the benchmark."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{name} worker failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(threads: int | None = None) -> dict:
    """The CPU (name, family/model, flags), its product ceilings in GFLOP/s at the small shape's MLP
    product (2048 x 1536 x 384) on `threads` threads, and the 1-minute load average before measuring."""
    import torch

    from genpt.kernels.measure import cpu_identity, product_ceilings

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if threads:
        torch.set_num_threads(threads)
    return {**cpu_identity(), "threads": torch.get_num_threads(), "load": load, "ceilings": product_ceilings()}


def describe_machine(m: dict) -> str:
    """One line: the CPU, its flags, its ceilings and the load, for every printed result."""
    ceilings = ", ".join(f"{name} {gflops:,.0f}" for name, gflops in m["ceilings"].items())
    return (f"CPU: {m['name']} (family {m['family']} model {m['model']}; {m['flags'] or 'no AVX2'}), "
            f"{m['threads']} threads, load {m['load']:.1f}; product ceilings GFLOP/s: {ceilings}")


def src_path_env() -> dict[str, str]:
    """The environment with the checkout's src/ first on PYTHONPATH, for workers in another interpreter."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def round_ratios(times: list[float], peer: list[float]) -> tuple[float, float, float]:
    """Speed over the peer's, round by round (the peer's step time over this one's): the median and the
    first and third quartiles."""
    ratios = sorted(b / a for a, b in zip(times, peer, strict=True))
    q = len(ratios) // 4
    return statistics.median(ratios), ratios[q], ratios[-q - 1]
