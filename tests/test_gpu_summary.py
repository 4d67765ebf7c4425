"""bench/gpu_summary.py: which backends gpu.sh combines and which variant wins, from the runs' JSON; a backend
that stepped aside (its library or GPU missing) never counts, whatever its speed."""

import json
from pathlib import Path

import pytest
from conftest import bench_script


@pytest.fixture(scope="module")
def summary():
    with bench_script("gpu_summary") as module:
        yield module


def write(out: Path, name: str, tps: float, kernels: str = "torch", float8: bool = False, ran: bool = True,
          nanogpt: float | None = None) -> None:
    backends = (["liger (...)"] if kernels == "liger" and ran else []) + (["float8 (...)"] if float8 and ran else [])
    results = {"genpt": {"tokens_per_s": tps, "mfu": tps / 1e6, "backends": backends}}
    if nanogpt:
        results["nanogpt"] = {"tokens_per_s": nanogpt, "mfu": nanogpt / 1e6}
    report = {"settings": {"kernels": kernels, "float8": float8}, "results": results}
    (out / f"throughput_{name}.json").write_text(json.dumps(report))


def test_two_gaining_backends_are_combined_and_the_fastest_wins(summary, tmp_path):
    write(tmp_path, "plain", 500_000, nanogpt=510_000)
    write(tmp_path, "liger", 540_000, kernels="liger")
    write(tmp_path, "float8", 520_000, float8=True)
    found = summary.load(tmp_path)
    assert summary.combination(found) == ["--kernels", "liger", "--float8"]
    assert summary.winner(found) == "liger"
    write(tmp_path, "best", 560_000, kernels="liger", float8=True)
    found = summary.load(tmp_path)
    assert summary.winner(found) == "best"
    assert summary.flags(found["best"], "settings") == ["--set", "train.kernels=liger", "--set", "train.float8=true"]
    table = summary.table(tmp_path, found)
    assert table["winner"] == "best"
    assert [round(r["vs_nanogpt"], 3) for r in table["variants"]] == [0.98, 1.059, 1.02, 1.098]


def test_a_backend_that_did_not_run_neither_combines_nor_wins(summary, tmp_path):
    write(tmp_path, "plain", 500_000)
    write(tmp_path, "liger", 560_000, kernels="liger", ran=False)  # the plain path under liger's name
    write(tmp_path, "float8", 540_000, float8=True)
    found = summary.load(tmp_path)
    assert summary.combination(found) == []
    assert summary.winner(found) == "float8"


def test_no_gain_means_no_winner(summary, tmp_path):
    write(tmp_path, "plain", 500_000)
    write(tmp_path, "liger", 495_000, kernels="liger")
    write(tmp_path, "float8", 503_000, float8=True)  # within 1%: not combined, but the fastest still wins
    found = summary.load(tmp_path)
    assert summary.combination(found) == []
    assert summary.winner(found) == "float8"
    write(tmp_path, "float8", 480_000, float8=True)
    assert summary.winner(summary.load(tmp_path)) is None
