"""What the benchmark scripts share: each implementation in its own subprocess, and the CPU's name."""

from __future__ import annotations

import json
import os
import platform
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


def src_path_env() -> dict[str, str]:
    """The environment with the checkout's src/ first on PYTHONPATH, for workers in another interpreter."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
