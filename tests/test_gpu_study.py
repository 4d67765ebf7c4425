"""scripts/gpu-study on the tiny recipe, on the CPU: prepared in one folder, run from another under a time
budget that stops it part way, finished by a second run, each leaving one archive with the report and no weights."""

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import SHARED_DATA, shared_data

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu-study"


def _gpu_study(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECIPE": "tiny", "PREPARED": str(tmp_path / "prepared"), "STUDY": str(tmp_path / "study"),
           "OUT": str(tmp_path / "out"), "WORKERS": "1", **env}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900)


def _archived(tmp_path: Path) -> list[str]:
    with tarfile.open(tmp_path / "out" / "study.tar.gz") as archive:
        return archive.getnames()


@pytest.mark.slow
def test_a_study_prepared_here_stops_at_its_budget_reports_what_finished_and_a_second_run_finishes_it(tmp_path):
    shared_data("gutenberg")
    shared_data("glue", "SST-2")
    prepared = _gpu_study(tmp_path, "prepare", str(SHARED_DATA))
    assert prepared.returncode == 0, prepared.stderr
    assert (tmp_path / "prepared" / "study" / "shards" / "meta.json").is_file()
    assert sorted(p.name for p in (tmp_path / "prepared" / "data" / "glue" / "SST-2").iterdir()) == [
        "dev.tsv", "train.tsv"]

    first = _gpu_study(tmp_path, "run", BUDGET_S="3")  # the pre-training runs cannot finish in 3 s
    assert first.returncode == 0, first.stderr
    assert "== stopped (exit 124)" in first.stdout
    stopped = len(list((tmp_path / "study").rglob("study_stage.json")))
    assert stopped < 12

    second = _gpu_study(tmp_path, "run")
    assert second.returncode == 0, second.stderr
    assert "stopped" not in second.stdout and "stages finished: 12" in second.stdout
    names = _archived(tmp_path)
    assert "./report.md" in names and "./zeroshot.png" in names and "./sst2/full-seed2/study_stage.json" in names
    assert not [n for n in names if n.endswith((".safetensors", "optimizer.pt", ".bin"))]
