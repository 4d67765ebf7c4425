"""A finished stage's record says when it ran, for how long and on what, beside its result."""

import time
from datetime import datetime

from genpt.kernels.measure import cpu_identity
from genpt.study import stages


def test_a_finished_stage_records_its_result_times_and_machine(tmp_path):
    assert stages.finished(tmp_path) is None
    started = time.time() - 90
    stages.finish(tmp_path, {"step": 40}, started, resumed=False)
    record = stages.finished(tmp_path)
    assert record["step"] == 40 and record["resumed"] is False
    assert 90 <= record["seconds"] < 120
    took = datetime.fromisoformat(record["finished"]) - datetime.fromisoformat(record["started"])
    assert abs(took.total_seconds() - record["seconds"]) <= 1
    assert record["machine"]["cpu"].startswith(cpu_identity()["name"]) and record["machine"]["threads"] >= 1
