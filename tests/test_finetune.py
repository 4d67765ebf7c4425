"""Fine-tuning end to end: every built-in task with files in ../shared, a custom CSV task, refusals."""

import json

import pytest
import torch
from conftest import pretrain_tiny, shared_data

from genpt import checkpoint as ckpt
from genpt.cli import main
from genpt.data.readers import read_examples
from genpt.data.tasks import builtin_task
from genpt.load import load_finetuned, load_lm
from genpt.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny model pre-trained for a few steps: enough to exercise every path quickly."""
    root = tmp_path_factory.mktemp("pre")
    return pretrain_tiny(root, root / "run", steps=10)


def head(path, n, tmp_path, name):
    """The first n data rows of a real file (and its header, if any), in the same layout."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path / name
    out.write_text("".join(lines[: n + 1]), encoding="utf-8")
    return out


BUILTIN = [
    ("sst2", ("glue", "SST-2", "train.tsv"), ("glue", "SST-2", "dev.tsv"), {"accuracy"}),
    ("cola", ("glue", "CoLA", "train.tsv"), ("glue", "CoLA", "dev.tsv"), {"mcc", "accuracy"}),
    ("mrpc", ("glue", "MRPC", "train.tsv"), ("glue", "MRPC", "dev.tsv"), {"f1", "accuracy"}),
    ("mrpc", ("glue", "MRPC", "msr_paraphrase_train.txt"), ("glue", "MRPC", "dev.tsv"), {"f1", "accuracy"}),
    ("stsb", ("glue", "STS-B", "train.tsv"), ("glue", "STS-B", "dev.tsv"), {"pearson", "spearman"}),
    ("wnli", ("glue", "WNLI", "train.tsv"), ("glue", "WNLI", "dev.tsv"), {"accuracy"}),
    ("qnli", ("glue", "QNLI", "dev.tsv"), ("glue", "QNLI", "dev.tsv"), {"accuracy"}),
    ("story_cloze", ("story_cloze", "cloze_test_val__spring2016 - cloze_test_ALL_val.csv"),
     ("story_cloze", "cloze_test_val__spring2016 - cloze_test_ALL_val.csv"), {"accuracy"}),
]


@pytest.mark.slow
@pytest.mark.parametrize("task, train, dev, metrics", BUILTIN, ids=[f"{b[0]}-{b[1][-1]}" for b in BUILTIN])
def test_finetune_then_evaluate_builtin_task(pretrained, tmp_path, capsys, task, train, dev, metrics):
    suffix = train[-1].rsplit(".", 1)[1]
    train_file = head(shared_data(*train), 48, tmp_path, f"train.{suffix}")
    dev_file = head(shared_data(*dev), 24, tmp_path, f"dev.{dev[-1].rsplit('.', 1)[1]}")
    out = tmp_path / "ft"
    code = main(["finetune", "--init", str(pretrained), "--task", task, "--train", str(train_file),
                 "--dev", str(dev_file), "-o", str(out), "--epochs", "2", "--batch-size", "16"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["best"]) == metrics and summary["best_epoch"] in (1, 2)
    assert (out / "best" / "model.safetensors").is_file() and (out / "best" / "tokenizer.json").is_file()
    assert main(["evaluate", str(out), "--task", task, "--data", str(dev_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == len(read_examples(builtin_task(task), dev_file)) and set(result) >= metrics
    for name in metrics:  # evaluate reproduces the best epoch's dev metrics from the saved model
        assert result[name] == pytest.approx(summary["best"][name], abs=1e-6)


@pytest.mark.slow
def test_custom_csv_task_without_code_and_predict(pretrained, tmp_path, capsys):
    rows = ["review,verdict"] + [f"\"{w} film, truly {w}\",{v}" for w, v in
                                 [("great", "good"), ("awful", "bad")] * 20]
    train = tmp_path / "train.csv"
    train.write_text("\n".join(rows) + "\n")
    out = tmp_path / "ft"
    code = main(["finetune", "--init", str(pretrained), "--task", "reviews", "--type", "classification",
                 "--columns", "review", "--label-column", "verdict", "--train", str(train), "--dev", str(train),
                 "-o", str(out), "--epochs", "1", "--batch-size", "8", "--lr", "1e-3"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    unlabeled = tmp_path / "new.csv"
    unlabeled.write_text("review\n\"great film, truly great\"\n\"awful film, truly awful\"\n")
    assert main(["predict", str(out), "--input", str(unlabeled), "--output", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {r["prediction"] for r in rows} <= {"bad", "good"}
    assert all(abs(r["p_bad"] + r["p_good"] - 1) < 1e-5 for r in rows)
    assert rows[0]["source"].endswith("new.csv:2")


def test_transfer_layers_and_scratch_initialise_as_the_paper_ablations(pretrained, tmp_path, capsys):
    from genpt.config import FinetuneConfig
    from genpt.train.finetune import initial_model

    base = load_lm(pretrained).state_dict()
    task = builtin_task("sst2")
    one, _, _ = initial_model(pretrained, task, FinetuneConfig(transfer_layers=1))
    state = one.gpt.state_dict()
    assert torch.equal(state["tokens_embed.weight"], base["tokens_embed.weight"])
    assert torch.equal(state["h.0.attn.c_attn.weight"], base["h.0.attn.c_attn.weight"])
    assert not torch.equal(state["h.1.attn.c_attn.weight"], base["h.1.attn.c_attn.weight"])
    scratch, _, _ = initial_model(pretrained, task, FinetuneConfig(scratch=True))
    assert not torch.equal(scratch.gpt.state_dict()["tokens_embed.weight"], base["tokens_embed.weight"])


def test_fine_tuned_folder_holds_task_labels_and_tokenizer(pretrained, tmp_path, capsys):
    train = head(shared_data("glue", "SST-2", "train.tsv"), 32, tmp_path, "train.tsv")
    out = tmp_path / "ft"
    assert main(["finetune", "--init", str(pretrained), "--task", "sst2", "--train", str(train), "-o", str(out),
                 "--epochs", "1", "--batch-size", "16", "--lm-coef", "0"]) == 0
    loaded = load_finetuned(out)
    assert loaded.task.name == "sst2" and loaded.task.label_names == ("0", "1")
    base_tokenizer = Tokenizer.load(ckpt.resolve_checkpoint(pretrained) / "tokenizer.json")
    assert loaded.tokenizer.fingerprint == base_tokenizer.fingerprint


def test_a_run_without_resume_checkpoints_keeps_best_only_and_is_not_overwritten(pretrained, tmp_path, capsys):
    train = head(shared_data("glue", "SST-2", "train.tsv"), 32, tmp_path, "train.tsv")
    out = tmp_path / "ft"
    args = ["finetune", "--init", str(pretrained), "--task", "sst2", "--train", str(train), "--dev", str(train),
            "-o", str(out), "--epochs", "2", "--batch-size", "16", "--set", "finetune.resume_checkpoints=false"]
    assert main(args) == 0, capsys.readouterr().err
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ckpt.latest_checkpoint(out) is None and (out / "best" / "model.safetensors").is_file()
    kept = (out / "best" / "model.safetensors").read_bytes()

    assert main(args) == 2  # a finished run's best/ is not trained over without --resume
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (out / "best" / "model.safetensors").read_bytes() == kept

    assert main([*args, "--resume"]) == 0  # nothing to resume from: it starts over, the same seed the same run
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["best"] == first["best"] and again["best_epoch"] == first["best_epoch"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == [2, 4]  # the first attempt's rows dropped


@pytest.mark.parametrize(
    "content, message",
    [
        ("sentence\tlabel\nfine film\t1\nbad film\t7\n", "train.tsv:3: unknown label '7'"),
        ("sentence\tlabel\nfine film\t1\n\t0\n", "train.tsv:3: column 'sentence' holds"),
        ("text\tlabel\nfine film\t1\n", "train.tsv:1: no column 'sentence'"),
    ],
)
def test_bad_task_file_is_one_line_exit_2(pretrained, tmp_path, capsys, content, message):
    train = tmp_path / "train.tsv"
    train.write_text(content)
    code = main(["finetune", "--init", str(pretrained), "--task", "sst2", "--train", str(train),
                 "-o", str(tmp_path / "ft")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ft").exists()


def test_nan_score_is_refused(pretrained, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    train.write_text(header + "0\tg\tf\ty\t0\ts\ts\ta cat\ta dog\tnan\n")
    code = main(["finetune", "--init", str(pretrained), "--task", "stsb", "--train", str(train),
                 "-o", str(tmp_path / "ft")])
    assert code == 2 and "train.tsv:2: score 'nan' is not finite" in capsys.readouterr().err
