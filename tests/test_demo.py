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


@pytest.mark.slow
def test_the_genre_comparison_reads_each_run_at_its_last_epoch_and_reuses_finished_runs(tmp_path, monkeypatch):
    from conftest import pretrain_tiny

    from genpt import demo
    from genpt.datasets.shakespeare import Play

    run = pretrain_tiny(tmp_path, tmp_path / "pretrain", steps=4)
    text = shared_data("tinyshakespeare", "input.txt").read_text()
    plays = []
    for i, genre in enumerate(("comedy", "history", "tragedy") * 2):
        path = tmp_path / f"play{i}.txt"
        path.write_text(text[100_000 + i * 20_000 : 120_000 + i * 20_000])
        plays.append(Play(f"play{i}", f"Play {i}", genre, path))
    monkeypatch.setattr(demo, "GENRE_SEEDS", (0,))
    monkeypatch.setattr(demo, "GENRE_PER_PLAY", (6, 4))
    out = tmp_path / "demo"

    accuracy, sizes, folders = demo.genre_finetuning(run, out, plays[:3], plays[3:], "float32")
    assert sizes == (18, 12) and list(accuracy) == ["pre-trained", "from scratch"]
    for runs, folder in zip(accuracy.values(), folders, strict=True):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert runs == [[r for r in rows if r["split"] == "val"][-1]["accuracy"]]  # as the report draws it

    def refuse(*args, **kwargs):
        raise AssertionError("a finished genre run was fine-tuned again")

    monkeypatch.setattr("genpt.train.finetune.finetune", refuse)
    metrics = folders[0] / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    [r for r in rows if r["split"] == "val"][-1]["accuracy"] = 0.125  # not an accuracy 12 passages can give
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again, _, _ = demo.genre_finetuning(run, out, plays[:3], plays[3:], "float32")
    assert again == {"pre-trained": [0.125], "from scratch": accuracy["from scratch"]}
