"""`genpt report` on a tiny real study: two pre-training runs (Transformer, LSTM) with zero-shot curves and
fine-tuned runs in several settings; every figure exists, is a non-blank PNG, and report.md embeds it."""

import re
from types import SimpleNamespace

import matplotlib.image
import pytest
from conftest import shared_data

from genpt.cli import main
from genpt.config import FinetuneConfig, PretrainConfig
from genpt.data.readers import read_examples
from genpt.data.tasks import builtin_task
from genpt.errors import GenptError
from genpt.study import zeroshot as zs
from genpt.study.report import _comparison_table, _where_table, read_run, setting_of, write_report
from genpt.train.finetune import finetune
from genpt.train.pretrain import pretrain


def pretrain_tiny(shards, run, **model):
    config = PretrainConfig()
    for key, value in {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_ctx": 32, **model}.items():
        setattr(config.model, key, value)
    t = config.train
    t.batch_size, t.max_steps, t.warmup_steps, t.lr = 8, 20, 4, 3e-3
    t.log_interval, t.eval_interval, t.eval_batches, t.checkpoint_interval, t.keep_checkpoints = 2, 10, 2, 10, 10
    config.data.shards = str(shards)
    pretrain(config, run, progress=False)
    return run


@pytest.fixture(scope="module")
def study(shards, tmp_path_factory):
    """Runs as a study makes them, on SST-2's first 48 training and 24 dev sentences."""
    root = tmp_path_factory.mktemp("study")
    sst2 = builtin_task("sst2")
    dev_file = root / "dev.tsv"
    dev_file.write_text("".join(shared_data("glue", "SST-2", "dev.tsv").read_text().splitlines(keepends=True)[:25]))
    train = read_examples(sst2, shared_data("glue", "SST-2", "train.tsv"))[:48]
    dev = read_examples(sst2, dev_file)
    runs = [pretrain_tiny(shards, root / "gpt"), pretrain_tiny(shards, root / "lstm", arch="lstm", lstm_hidden=48)]
    for run in runs:
        zs.write_curve(run, zs.zeroshot_curve(run, [zs.ZeroShotData("sst2", dev_file, best=0.8, limit=12)]))
    settings = [("full", 1, {}), ("full", 2, {}), ("scratch", 1, {"scratch": True}), ("scratch", 2, {"scratch": True}),
                ("noaux", 1, {"lm_coef": 0.0}), ("t0", 1, {"transfer_layers": 0})]
    for name, seed, values in settings:
        cfg = FinetuneConfig(epochs=2, batch_size=8, lr=1e-3, seed=seed, **values)
        finetune(runs[0], sst2, "train", "dev", root / f"ft-{name}-{seed}", cfg, train_examples=train,
                 dev_examples=dev, progress=False)
        runs.append(root / f"ft-{name}-{seed}")
    finetune(runs[1], sst2, "train", "dev", root / "ft-lstm-1", FinetuneConfig(epochs=2, batch_size=8, lr=1e-3),
             train_examples=train, dev_examples=dev, progress=False)
    return [*runs, root / "ft-lstm-1"], dev_file


@pytest.mark.slow
def test_report_draws_every_figure_and_embeds_each_with_a_caption(study, tmp_path):
    runs, dev_file = study
    path = write_report(runs, tmp_path / "report", {"sst2": dev_file})
    text = path.read_text()
    embedded = re.findall(r"!\[([^]]+)\]\(([^)]+)\)", text)
    files = {f for _, f in embedded}
    assert files == {"pretraining_loss.png", "throughput.png", "zeroshot.png", "finetuning_epochs.png",
                     "ablations.png", "transfer.png", "confusion_sst2_full.png", "confusion_sst2_no_aux_LM.png",
                     "confusion_sst2_no_pre-training.png", "confusion_sst2_LSTM.png"}
    for _, name in embedded:
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and pixels.std() > 0.05, f"{name} looks blank"
        assert re.search(r"\*Figure \d+\. .{40,}\*", text.split(f"]({name})")[1]), f"{name} has no caption"
    assert "| sst2 | accuracy | no pre-training |" in text and "| 2 |" in text  # two seeds in the table
    transfer = text.split("## Blocks transferred")[1].split("##")[0]
    assert re.search(r"\| sst2 \| accuracy \| 0 \| [\d.]+ ± [\d.]+ \| 1 \|", transfer)  # the t0 run
    zeroshot = text.split("## Zero-shot scores at each checkpoint")[1].split("##")[0]
    assert re.search(r"\| gpt \| 10 \| [\d,]+ \| sst2 \| accuracy \| [\d.]+ ± [\d.]+ \| 12 \|", zeroshot)
    # the runs' shards are there: each curve has the unigram model's score beside its checkpoints'
    assert re.search(r"\| gpt \| unigram reference \| - \| sst2 \| accuracy \| [\d.]+ ± [\d.]+ \| 12 \|", zeroshot)
    again = write_report(runs, tmp_path / "report", {"sst2": dev_file})  # a report folder may be redrawn
    assert again.read_text() == text


def test_full_is_compared_with_each_setting_by_its_spread_and_welchs_test():
    table = {"sst2": {"full": [0.74, 0.76, 0.75], "no pre-training": [0.50, 0.52, 0.51], "LSTM": [0.70],
                      "no aux LM": [0.70, 0.80, 0.75]}}
    rows = _comparison_table(table, {"sst2": "accuracy"}).splitlines()[2:]
    # 0.24 apart, both stds 0.01: 24 of them; Welch t = 0.24 / sqrt(2 * 0.01**2 / 3) = 29.4 on 4 degrees: p 8e-6
    assert rows[0] == "| sst2 | accuracy | no aux LM | +0.0000 | 0.0500 | 0.0 | 1.000 |"
    assert rows[1] == "| sst2 | accuracy | no pre-training | +0.2400 | 0.0100 | 24.0 | 0.000 |"
    assert len(rows) == 2  # one LSTM seed: no spread to compare with
    assert _comparison_table({"sst2": {"full": [0.7, 0.8]}}, {"sst2": "accuracy"}) == ""


def test_the_stages_machines_and_times_are_summed_by_kind_and_machine():
    cpu = {"cpu": "AMD EPYC (family 26 model 2)", "torch": "2.13.0+cpu", "threads": 1}

    def run(started, finished, seconds, resumed=False, machine=cpu):
        day = "2026-12-02T"
        return SimpleNamespace(stage={"started": f"{day}{started}+00:00", "finished": f"{day}{finished}+00:00",
                                      "seconds": seconds, "resumed": resumed, "machine": machine})

    older = SimpleNamespace(stage={"step": 40})  # a stage recorded before stages kept their times
    pre = [run("13:00:00", "13:20:00", 1200.0), run("13:00:00", "13:10:00", 600.0), SimpleNamespace(stage=None), older]
    fine = [run("13:20:00", "13:23:00", 180.0), run("13:21:00", "13:30:00", 540.0, resumed=True),
            run("13:31:00", "13:32:00", 60.0, machine={**cpu, "threads": 2})]
    lines = _where_table(pre, fine).splitlines()
    assert lines[2] == ("| pre-training | 2 | AMD EPYC (family 26 model 2) | 2.13.0+cpu | 1 | 30.0 min | "
                        "2026-12-02 13:00:00 UTC | 2026-12-02 13:20:00 UTC |")
    assert lines[3].startswith("| fine-tuning | 2 | AMD EPYC (family 26 model 2) | 2.13.0+cpu | 1 | 12.0 min |")
    assert lines[4].startswith("| fine-tuning | 1 | AMD EPYC (family 26 model 2) | 2.13.0+cpu | 2 | 1.0 min |")
    # 13:00-13:30 covered (overlapping stages once), 13:30-13:31 idle, 13:31-13:32: 31 minutes busy of 32
    assert "**31.0 minutes** of wall clock" in lines[6] and "32.0 minutes from the first stage's start" in lines[6]
    assert lines[7].startswith("1 stage(s) resumed")
    assert lines[8].startswith("1 more stage(s) were made by a genpt that did not yet record times")
    assert _where_table([SimpleNamespace(stage=None)], []) == ""  # runs made outside a study say nothing


def test_settings_follow_from_the_fine_tuning_settings():
    assert setting_of("transformer", False, -1, 12, 0.5) == "full"
    assert setting_of("transformer", False, 12, 12, 0.5) == "full"
    assert setting_of("transformer", False, 3, 12, 0.5) == "transfer 3"
    assert setting_of("transformer", False, -1, 12, 0.0) == "no aux LM"
    assert setting_of("transformer", True, -1, 12, 0.5) == "no pre-training"
    assert setting_of("lstm", False, -1, 1, 0.5) == "LSTM"
    assert setting_of("lstm", False, -1, 1, 0.0) == "LSTM, no aux LM"


def test_report_refuses_folders_it_cannot_read_or_must_not_overwrite(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(GenptError, match="neither a pre-training run"):
        read_run(tmp_path / "notes")
    run = tmp_path / "run"
    run.mkdir()
    row = '{"step": 2, "split": "train", "loss": 5.0, "lr": 0.001, "tokens_per_s": 100.0, "tokens": 64}\n'
    (run / "metrics.jsonl").write_text(row + '{"step": 4, "spl\n' + row)
    with pytest.raises(GenptError, match=r"metrics.jsonl:2: not JSON"):
        read_run(run)
    (run / "metrics.jsonl").write_text(row + '{"step": 4, "spl')  # cut short by a kill: left out
    assert len(read_run(run).curve.train) == 1
    assert main(["report", str(run), "-o", str(tmp_path / "notes")]) == 2
    assert "holds files but no report.md" in capsys.readouterr().err
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    assert main(["report", str(run), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "pretraining_loss.png").stat().st_size > 5_000
