"""`genpt study` on the tiny recipe: every stage runs once into its folder, report.md and its figures appear,
and a second invocation retrains nothing and writes the same tables."""

import re

import pytest
from conftest import SHARED_DATA, shared_data

from genpt.cli import main
from genpt.errors import GenptError
from genpt.study.run import DONE, load_recipe, run_study


def _tables(report: str) -> str:
    return report.split("## Figures")[0]


@pytest.mark.slow
def test_tiny_study_writes_the_report_and_a_second_run_reuses_every_stage(tmp_path):
    shared_data("gutenberg")
    shared_data("glue", "SST-2")
    out = tmp_path / "study"
    report = run_study("tiny", out, data_root=SHARED_DATA)
    text = report.read_text()
    assert report == out / "report.md"
    for name in ("pretraining_loss.png", "zeroshot.png", "ablations.png", "transfer.png", "confusion_sst2_full.png"):
        assert f"]({name})" in text and (out / name).stat().st_size > 5_000
    for setting in ("full", "no aux LM", "no pre-training", "LSTM"):
        assert re.search(rf"\| sst2 \| accuracy \| {setting} \| [\d.]+ ± [\d.]+ \| 2 \|", text), setting
    stages = sorted(out.glob(f"**/{DONE}"))
    assert len(stages) == 2 + 5 * 2  # two pre-training runs; five settings, two seeds each
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "checkpoints" in p.parts}
    assert before  # the stages' checkpoints: a retrained stage would rewrite them

    again = run_study("tiny", out, data_root=SHARED_DATA).read_text()
    assert _tables(again) == _tables(text)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "checkpoints" in p.parts}
    assert after == before


def test_a_recipe_name_that_is_not_shipped_is_refused_naming_those_that_are(capsys):
    assert main(["study", "--recipe", "nosuch", "-o", "unused"]) == 2
    err = capsys.readouterr().err
    assert "--recipe nosuch: no such recipe; shipped: " in err and "tiny" in err


def test_a_study_does_not_write_into_a_folder_of_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(GenptError, match="not a study folder"):
        run_study("tiny", tmp_path, data_root=SHARED_DATA)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_a_recipe_with_an_unknown_setting_is_refused(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('settings = ["full", "half"]\n[pretrain]\nshards = "s"\n'
                      '[[tasks]]\nname = "sst2"\ntrain = "t"\ndev = "d"\n')
    with pytest.raises(GenptError, match=r"r.toml: unknown setting\(s\) \['half'\]"):
        load_recipe(recipe)
