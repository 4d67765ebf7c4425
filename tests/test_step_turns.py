"""bench/step_turns.py: genpt and a peer take turns, each compared with the peer round by round, with the
middle half of the rounds' ratios beside the median."""

import json

from conftest import bench_script


def test_the_round_ratios_give_the_median_and_the_middle_half():
    with bench_script("step_turns") as module:
        # speeds over the peer, round by round: 2.0, 1.0, 4.0, 0.5, 1.5, 3.0, 1.25, 2.5
        median, low, high = module.round_ratios([1.0] * 8, [2.0, 1.0, 4.0, 0.5, 1.5, 3.0, 1.25, 2.5])
    assert (median, low, high) == (1.75, 1.25, 2.5)


def test_each_variant_is_reported_against_the_peer_with_its_spread(tmp_path, capsys):
    saved = tmp_path / "turns.json"
    with bench_script("step_turns") as module:
        module.main(["--shape", "tiny", "--impls", "genpt,genpt-plain,hf", "--rounds", "3", "--warmup", "1",
                     "--save", str(saved)])
    out = capsys.readouterr().out
    rows = {line[:24].strip(): line[24:].split() for line in out.splitlines() if line.startswith(("genpt (", "HF"))}
    assert set(rows) == {"genpt (measured)", "genpt (plain twins)", "HF OpenAIGPT"}
    assert rows["HF OpenAIGPT"][2:] == ["1.00x", "(1.00-1.00)"]
    assert "CPU:" in out and "median of 3 rounds in turns after 1" in out
    result = json.loads(saved.read_text())
    assert len(result["step_s"]["hf"]) == 3 and set(result["ratio_middle_half"]) == {
        "genpt/hf", "genpt-plain/hf", "hf/hf"}
    low, high = result["ratio_middle_half"]["genpt/hf"]
    assert low <= result["ratios"]["genpt/hf"] <= high
