"""`genpt study` on the tiny recipe: every stage runs once into its folder, report.md and its figures appear,
and a second invocation retrains nothing and writes the same tables."""

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import SHARED_DATA, pretrain_tiny, shared_data

from genpt.cli import main
from genpt.errors import GenptError
from genpt.kernels import select
from genpt.study import stages
from genpt.study.run import Task, _jobs, finetune_config, load_recipe, run_study, study_kernels
from genpt.study.zeroshot import read_curve


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
    finished = sorted(out.glob(f"**/{stages.FILE}"))
    assert len(finished) == 2 + 5 * 2  # two pre-training runs; five settings, two seeds each
    where = text.split("## Where it ran and how long")[1].split("##")[0]
    assert re.search(r"\| pre-training \| 2 \| .+ \| [\d.]+ min \|", where)
    assert re.search(r"\| fine-tuning \| 10 \| .+ \| [\d.]+ min \|", where) and "minutes** of wall clock" in where
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "checkpoints" in p.parts}
    assert before  # the stages' checkpoints: a retrained stage would rewrite them
    # The zero-shot curves were scored before fine-tuning ended; the report puts them on the full runs' scale.
    full = float(re.search(r"\| sst2 \| accuracy \| full \| ([\d.]+) ±", text).group(1))
    zeroshot = re.findall(r"\| (?:pretrain|pretrain-lstm) \| \d+ \| [\d,]+ \| sst2 \| accuracy \| ([\d.]+) ± [\d.]+ "
                          r"\| \d+ \| (\S+) \|", text)
    assert len(zeroshot) == 4  # two checkpoints of each run
    for score, scaled in zeroshot:
        expected = "-" if full - 0.5 < 0.1 else f"{(float(score) - 0.5) / (full - 0.5):.3f}"
        assert scaled == expected

    again = run_study("tiny", out, data_root=SHARED_DATA).read_text()
    assert _tables(again) == _tables(text)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "checkpoints" in p.parts}
    assert after == before

    # Seed by seed: every task and setting had its first seed before any had its second.
    started = {f.parent.name: f.stat().st_mtime_ns for f in (out / "sst2").glob("*/finetune.json")}
    assert max(t for n, t in started.items() if n.endswith("seed1")) < min(
        t for n, t in started.items() if n.endswith("seed2"))

    # A study stopped part way is reported from the stages that finished, and none is run.
    (out / "sst2" / "lstm-seed2" / stages.FILE).unlink()
    partial = run_study("tiny", out, data_root=SHARED_DATA, only="report").read_text()
    assert re.search(r"\| sst2 \| accuracy \| LSTM \| [\d.]+ ± [\d.]+ \| 1 \|", partial)
    assert "| lstm-seed2 |" not in partial and "| lstm-seed1 |" in partial
    assert not (out / "sst2" / "lstm-seed2" / stages.FILE).exists()


@pytest.mark.slow
def test_only_shards_makes_the_tokens_and_runs_no_stage(tmp_path):
    shared_data("gutenberg")
    out = tmp_path / "study"
    assert run_study("tiny", out, data_root=SHARED_DATA, only="shards") is None
    assert (out / "shards" / "meta.json").is_file()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["recipe.toml", "shards"]
    with pytest.raises(GenptError, match="no stage of the study has finished yet"):
        run_study("tiny", out, data_root=SHARED_DATA, only="report")


@pytest.mark.slow
def test_a_study_prepared_here_runs_where_only_its_task_files_are(tmp_path):
    """The GPU workflow (scripts/gpu-study): shards made on one machine, the folder carried with the task files
    alone, the same command finishing it there without the books."""
    shared_data("gutenberg")
    out = tmp_path / "study"
    run_study("tiny", out, data_root=SHARED_DATA, only="shards")
    carried = tmp_path / "carried"
    (carried / "glue").mkdir(parents=True)
    shutil.copytree(SHARED_DATA / "glue" / "SST-2", carried / "glue" / "SST-2")
    shards = (out / "shards" / "meta.json").stat().st_mtime_ns
    report = run_study("tiny", out, data_root=carried, seeds=1).read_text()
    assert re.search(r"\| sst2 \| accuracy \| full \| [\d.]+ ± [\d.]+ \| 1 \|", report)
    assert (out / "shards" / "meta.json").stat().st_mtime_ns == shards


def test_two_worker_processes_share_the_stages_and_each_runs_once(tmp_path):
    shared_data("gutenberg")
    shared_data("glue", "SST-2")
    out = tmp_path / "study"
    report = run_study("tiny", out, data_root=SHARED_DATA, workers=2).read_text()
    assert len(sorted(out.glob(f"**/{stages.FILE}"))) == 2 + 5 * 2
    for setting in ("full", "no aux LM", "no pre-training", "LSTM"):
        assert re.search(rf"\| sst2 \| accuracy \| {setting} \| [\d.]+ ± [\d.]+ \| 2 \|", report), setting
    claimed = {p.name for p in (out / ".claims").iterdir()}
    assert claimed >= {"shards.lock", "pretrain.lock", "pretrain-lstm.lock", "sst2--full-seed1.lock"}


def test_a_study_from_a_given_run_fine_tunes_it_without_waiting_for_a_stage_of_its_own(tmp_path):
    """`[pretrain] init` names runs made elsewhere, which have no stage file: their fine-tuning runs must start
    (they once waited for that file for ever), and the zero-shot curve lands beside the run's own files."""
    shared_data("glue", "SST-2")
    run = pretrain_tiny(tmp_path / "lm", tmp_path / "lm" / "run", steps=4)
    recipe = tmp_path / "given.toml"
    recipe.write_text(f'seeds = 1\nsettings = ["full"]\n[pretrain]\ninit = "{run}"\n[finetune]\nepochs = 1\n'
                      '[[tasks]]\nname = "sst2"\ntrain = "glue/SST-2/train.tsv"\ndev = "glue/SST-2/dev.tsv"\n'
                      'train_size = 40\ndev_size = 40\nzeroshot = true\n')
    out = tmp_path / "study"
    subprocess.run([sys.executable, "-m", "genpt", "study", "--recipe", str(recipe), "--data", str(SHARED_DATA),
                    "-o", str(out)], check=True, timeout=600, capture_output=True)
    assert (out / "sst2" / "full-seed1" / stages.FILE).is_file()
    assert re.search(r"\| sst2 \| accuracy \| full \| [\d.]+ ± [\d.]+ \| 1 \|", (out / "report.md").read_text())
    assert {row["task"] for row in read_curve(run)} == {"sst2", "sst2_verdict"}  # the paper's words and the verdicts


def test_a_recipe_name_that_is_not_shipped_is_refused_naming_those_that_are(capsys):
    assert main(["study", "--recipe", "nosuch", "-o", "unused"]) == 2
    err = capsys.readouterr().err
    assert "--recipe nosuch: no such recipe; shipped: " in err and "tiny" in err


def test_a_folder_named_like_a_shipped_recipe_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cpu").mkdir()  # the usual output folder of `genpt study --recipe cpu -o cpu`
    assert load_recipe("cpu").path.name == "cpu.toml"


def test_a_study_does_not_write_into_a_folder_of_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(GenptError, match="not a study folder"):
        run_study("tiny", tmp_path, data_root=SHARED_DATA)
    assert (tmp_path / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize("text, message", [
    ('settings = ["full", "half"]\n[pretrain]\nshards = "s"\n[[tasks]]\nname = "sst2"\ntrain = "t"\ndev = "d"\n',
     r"r.toml: unknown setting\(s\) \['half'\]"),
    ('[pretrain]\nshards = "s"\n[[tasks]]\nname = "cola"\ntrain = "t"\ndev = "d"\n[tasks.finetune]\nepoch = 4\n',
     r"r.toml: task cola: finetune.epoch"),  # a task's own fine-tuning table: the task is named
], ids=["study setting", "task's finetune key"])
def test_a_recipe_with_an_unknown_setting_is_refused_naming_it(tmp_path, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(GenptError, match=message):
        load_recipe(recipe)


def test_the_shipped_recipes_read_and_their_tasks_find_their_data():
    shared_data("glue", "SST-2")
    shared_data("story_cloze")
    for name in ("tiny", "cpu", "gpu"):
        recipe = load_recipe(name, SHARED_DATA)
        for task in recipe.tasks:
            train, dev = task.examples()
            assert train and dev, (name, task.name)


def test_story_cloze_named_as_train_and_dev_is_split_as_gpt1_did():
    shared_data("story_cloze")
    task = next(t for t in load_recipe("cpu", SHARED_DATA).tasks if t.name == "story_cloze")
    full = Task(task.name, task.train, task.dev)
    train, dev = full.examples()
    assert (len(train), len(dev)) == (1497, 374)
    assert not {e.texts for e in train} & {e.texts for e in dev}


def test_another_task_named_as_train_and_dev_is_refused(tmp_path):
    with pytest.raises(GenptError, match="task sst2: train and dev are one file"):
        Task("sst2", tmp_path / "a.tsv", tmp_path / "a.tsv").examples()


def test_training_sets_are_sampled_with_a_fixed_seed_not_their_first_lines():
    shared_data("glue", "CoLA")
    task = Task("cola", SHARED_DATA / "glue/CoLA/train.tsv", SHARED_DATA / "glue/CoLA/dev.tsv", train_size=300)
    train, dev = task.examples()
    assert len(train) == 300 and len(dev) == 1043
    assert train == task.examples()[0]
    first = Task("cola", task.train, task.dev).examples()[0][:300]
    assert train != first


def test_transfer_layers_run_only_on_the_tasks_that_ask_for_them():
    recipe = load_recipe("cpu", SHARED_DATA)
    for task in recipe.tasks:
        names = {name.rsplit("-", 1)[0] for name, *_ in _jobs(recipe, task, 1)}
        expected = set(recipe.settings) | ({f"transfer{k}" for k in recipe.transfer_layers} if task.transfer else set())
        assert names == expected


def test_a_zero_shot_threshold_is_chosen_on_a_bounded_share_of_the_training_set(tmp_path, monkeypatch):
    import genpt.study.run as study_run

    shared_data("glue", "CoLA")
    task = Task("cola", SHARED_DATA / "glue/CoLA/train.tsv", SHARED_DATA / "glue/CoLA/dev.tsv", train_size=40,
                zeroshot=True)
    seen = []
    monkeypatch.setattr(study_run, "THRESHOLD_EXAMPLES", 25)
    monkeypatch.setattr(study_run.zs, "zeroshot_curve", lambda run, specs: seen.extend(specs) or [])
    monkeypatch.setattr(study_run.zs, "write_curve", lambda run, rows: None)
    study_run._zeroshot_stage(tmp_path, [task])
    assert [spec.task for spec in seen] == ["cola"]  # no shards to count: no cola_slor, and no failure
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "meta.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"data": {"shards": str(tmp_path / "shards")}}))
    seen.clear()
    study_run._zeroshot_stage(tmp_path, [task])
    assert [spec.task for spec in seen] == ["cola", "cola_slor"]  # the paper's heuristic and the corrected one
    for spec in seen:
        assert list(spec.train_examples) == task.examples()[0][:25]  # the first of a seeded sample: a fair share
        assert len(spec.examples) == 1043  # the dev set it is scored on stays whole


def test_a_zero_shot_heuristic_without_a_threshold_scores_the_training_stories_too(tmp_path, monkeypatch):
    import genpt.study.run as study_run

    shared_data("story_cloze")
    stories = SHARED_DATA / "story_cloze" / "cloze_test_val__spring2016 - cloze_test_ALL_val.csv"
    task = Task("story_cloze", stories, stories, train_size=100, zeroshot=True)
    seen = []
    monkeypatch.setattr(study_run.zs, "zeroshot_curve", lambda run, specs: seen.extend(specs) or [])
    monkeypatch.setattr(study_run.zs, "write_curve", lambda run, rows: None)
    study_run._zeroshot_stage(tmp_path, [task])
    assert [spec.task for spec in seen] == ["story_cloze", "story_cloze_pmi"]
    for spec in seen:
        assert len(spec.examples) == 1871 and spec.train_examples is None  # all of them, not the 100 sampled
        assert list(spec.examples[-374:]) == task.examples()[1]  # the dev stories among them


def test_a_task_s_own_finetune_table_overrides_the_recipe_s_for_that_task_only(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('settings = ["full", "no_aux_lm"]\n[pretrain]\nshards = "s"\n[finetune]\nepochs = 2\nlr = 1e-3\n'
                      '[[tasks]]\nname = "cola"\ntrain = "t"\ndev = "d"\n[tasks.finetune]\nepochs = 4\nlr = 3e-4\n'
                      '[[tasks]]\nname = "sst2"\ntrain = "t"\ndev = "d"\n')
    loaded = load_recipe(recipe)
    cola, sst2 = loaded.tasks
    for task, (epochs, lr) in ((cola, (4, 3e-4)), (sst2, (2, 1e-3))):
        cfg = finetune_config(loaded, task, {}, 1)
        assert (cfg.epochs, cfg.lr) == (epochs, lr)
    # A setting's own values (no aux LM's lambda 0) and the seed still come last.
    no_aux = finetune_config(loaded, cola, {"lm_coef": 0.0}, 3)
    assert (no_aux.epochs, no_aux.lm_coef, no_aux.seed) == (4, 0.0, 3)


def test_a_study_s_stages_share_its_own_final_kernel_choices(tmp_path):
    """Inside a study the selector is final and keeps OUT/kernels.json, which takes the machine's choices as asked;
    outside it the process's own selector is back."""
    machine = tmp_path / "machine.json"
    select.Cache(machine).put("gelu|x", select.Choice("fused", {"fused": 1.0, "plain": 2.0}))
    before = select.Selector("measure", select.Cache(machine))
    saved = select.use(before)
    try:
        with study_kernels(tmp_path / "study"):
            inside = select.selector()
            assert inside.final and inside.mode == "measure" and inside.cache.get("gelu|x").chosen == "fused"
            assert (tmp_path / "study" / select.KERNELS_FILE).is_file()
        assert select.selector() is before
    finally:
        select.use(saved)
