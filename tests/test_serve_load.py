"""The short version of bench/serve_load.py: concurrent clients against `genpt serve` subprocesses, no errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from serving import tiny_runs

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve_load.py"


def test_load_with_and_without_batching_answers_every_request(tmp_path_factory):
    runs = tiny_runs(tmp_path_factory.getbasetemp() / "serve-runs")
    out = subprocess.run([sys.executable, str(BENCH), "--classifier", str(runs["sst2"]), "--lm", str(runs["lm"]),
                          "--clients", "8", "--requests", "24", "--rounds", "1", "--seconds", "120",
                          "--max-tokens", "4", "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for endpoint in ("classify", "completions"):
        for server in ("batched", "unbatched"):
            result = report["endpoints"][endpoint][server]
            assert result["errors"] == 0 and result["requests"] == 24, (endpoint, server, result)
