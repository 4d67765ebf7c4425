"""`genpt demo --corpus`: the pre-training half of the demo on the user's text ends with its own report."""

import json

import pytest
from conftest import shared_data

from genpt.cli import main


@pytest.mark.slow
def test_demo_on_a_corpus_prints_the_perplexities_and_writes_its_report(tmp_path, capsys):
    text = shared_data("tinyshakespeare", "input.txt").read_text()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(10):
        (corpus / f"part{i}.txt").write_text(text[i * 30_000 : (i + 1) * 30_000])
    out = tmp_path / "demo"
    assert main(["demo", "--corpus", str(corpus), "--output", str(out), "--minutes", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "validation perplexity: untrained" in printed and "genre" not in printed
    assert f"report (figures of the run): {out / 'report' / 'report.md'}" in printed
    report = (out / "report" / "report.md").read_text()
    assert "](pretraining_loss.png)" in report
    assert (out / "report" / "pretraining_loss.png").stat().st_size > 5_000
    settings = json.loads((out / "pretrain" / "config.json").read_text())["train"]
    assert settings["max_minutes"] == 0.2  # the precision probe before it is setup, not taken from the budget
