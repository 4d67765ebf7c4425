"""The crash harness (bench/faults/crash.py), short: one trial per kind and place a signal can land.

Pre-training and fine-tuning are SIGKILLed and SIGTERMed in a step, in a checkpoint write and in an
evaluation, each resumed with --resume; every checkpoint left behind must be readable and the final
weights and metric rows must equal those of a run never interrupted. Where each signal lands is chosen
by a seeded generator; the full run (24 trials per kind) and its counts are in docs/reliability.md.
"""

import pytest
from conftest import BENCH, bench_script


@pytest.fixture(scope="module")
def crash():
    with bench_script("crash", BENCH / "faults") as module:
        yield module


@pytest.mark.slow
def test_runs_killed_anywhere_resume_to_the_weights_of_an_uninterrupted_run(crash, tmp_path):
    results = crash.run_all(tmp_path, trials=3, seed=1, report=lambda line: None)
    table = crash.summary(results)
    assert len(results) == 12 and {t.event for t in results} == set(crash.EVENTS)
    for kind, row in table.items():
        assert row["failed resumes"] == 0, (kind, row)
        assert row["unreadable checkpoints"] == 0, (kind, row)
        assert row["weights differ"] == 0 and row["metrics differ"] == 0, (kind, row)
    # SIGKILL ends a run at once; SIGTERM at the end of its step, with a checkpoint (143), or, landing in
    # the final checkpoint write after the last step, lets the finished run end normally (0).
    assert {t.killed_rc for t in results if t.signal == "SIGKILL"} == {-9}
    assert {t.killed_rc for t in results if t.signal == "SIGTERM"} <= {143, 0}
