"""bench/path_turns.py: every alternative of the path takes whole steps of one model, and each is compared
with the plain twin (itself at exactly 1)."""

from conftest import bench_script


def test_each_alternative_is_reported_against_the_plain_twin(capsys):
    with bench_script("path_turns") as module:
        module.main(["--path", "dropout", "--shape", "tiny", "--dropout", "0.1", "--rounds", "4", "--warmup", "0"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["lanes"], ["plain"])}
    assert set(rows) == {"lanes", "plain"}
    assert rows["plain"][2:] == ["1.000x", "1.000-1.000"]
    assert float(rows["lanes"][2].rstrip("x")) > 0
    assert "path dropout; shape tiny" in out and "CPU:" in out
