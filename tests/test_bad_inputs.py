"""Every bad input is refused the same way: exit 2, ONE line on stderr naming the file or setting, and
nothing on disk changed (the working folder's tree and every file's hash are compared before and after).

Each case runs the real command line, `genpt.cli.main([...])`, in a fresh copy of a folder holding a
corpus, a tokenizer, shards, a pre-trained run, a fine-tuned run and task files, which the case may
first damage.
"""

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from genpt.cli import main
from genpt.config import FinetuneConfig, PretrainConfig
from genpt.data.corpus import prepare, train_tokenizer
from genpt.data.tasks import builtin_task
from genpt.train.finetune import finetune
from genpt.train.pretrain import pretrain

WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls sing of rain and "
         "bright morning light on quiet hills").split()
RUN_CKPT = "run/checkpoints/step_00000004"
FT_BEST = "ft/best"


def _sentence(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(4, 12))))


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """The folder each case copies: inputs and outputs of every stage, made by the library itself."""
    root = tmp_path_factory.mktemp("assets")
    rng = np.random.default_rng(0)
    (root / "corpus").mkdir()
    for i in range(3):
        (root / "corpus" / f"doc{i}.txt").write_text("\n".join(_sentence(rng) for _ in range(300)) + "\n")
    tokenizer = train_tokenizer([root / "corpus"], vocab_size=300)
    tokenizer.save(root / "tok.json")
    prepare([root / "corpus"], tokenizer, root / "shards", val_fraction=0.34, workers=1, progress=False)
    config = PretrainConfig()
    for key, value in dict(n_layer=1, n_embd=16, n_head=2, n_ctx=32).items():
        setattr(config.model, key, value)
    config.train.batch_size, config.train.max_steps, config.train.warmup_steps = 2, 4, 1
    config.train.checkpoint_interval, config.train.eval_batches = 2, 1
    config.data.shards = str(root / "shards")
    pretrain(config, root / "run", progress=False)
    rows = ["sentence\tlabel"] + [f"{_sentence(rng)}\t{i % 2}" for i in range(16)]
    (root / "train.tsv").write_text("\n".join(rows) + "\n")
    (root / "dev.tsv").write_text("\n".join(rows[:9]) + "\n")
    finetune(root / "run", builtin_task("sst2"), root / "train.tsv", root / "dev.tsv", root / "ft",
             FinetuneConfig(epochs=1, batch_size=4, lr=1e-3), progress=False)
    (root / "task.toml").write_text('name = "mine"\ntype = "classification"\ncolumns = ["sentence"]\n'
                                    'label_column = "label"\nlabels = ["0", "1"]\n')
    (root / "flipped.toml").write_text('name = "flipped"\ntype = "classification"\ncolumns = ["sentence"]\n'
                                       'label_column = "label"\nlabels = ["1", "0"]\n')
    (root / "settings.toml").write_text("[model]\nn_layer = 1\nn_embd = 16\nn_head = 2\nn_ctx = 32\n")
    return root


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (hidden ones too), with each file's SHA-256."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root) + "/"] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = "link" if os.path.islink(path) else \
                hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return found


@pytest.fixture
def workdir(assets, tmp_path, monkeypatch) -> Path:
    work = tmp_path / "w"
    shutil.copytree(assets, work, symlinks=True)
    monkeypatch.chdir(work)
    return work


# ---- damage done to the copy before a case runs -------------------------------------------------------

def write(path: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return setup


def remove(path: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        target = work / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return setup


def truncate(path: str, keep: int) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        data = (work / path).read_bytes()
        (work / path).write_bytes(data[:keep])
    return setup


def edit_json(path: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        data = json.loads((work / path).read_text())
        change(data)
        (work / path).write_text(json.dumps(data))
    return setup


def fill_bytes(path: str, byte: int) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        size = (work / path).stat().st_size
        (work / path).write_bytes(bytes([byte]) * size)
    return setup


def poison_weights(path: str, value: float) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        weights = load_file(work / path)
        name = sorted(weights)[0]
        weights[name] = weights[name].clone()
        weights[name].view(-1)[0] = value
        save_file(weights, work / path, metadata={"format": "pt"})
    return setup


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def malicious_pickle(path: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        torch.save({"state": {0: _Evil()}, "param_groups": []}, work / path)
    return setup


def rehash(checkpoint: str) -> Callable[[Path], None]:
    """Make the manifest agree with the files, as a crafted (not a damaged) checkpoint would."""
    def setup(work: Path) -> None:
        folder = work / checkpoint
        files = {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                 for p in folder.iterdir() if p.name != "manifest.json"}
        (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return setup


def every_checkpoint(make: Callable[[str], Callable[[Path], None]], crafted: bool = False) -> Callable[[Path], None]:
    """Damage (or craft) the same file in each of the run's checkpoints: nothing intact to fall back to."""
    def setup(work: Path) -> None:
        for folder in sorted((work / "run" / "checkpoints").glob("step_*")):
            name = f"run/checkpoints/{folder.name}"
            make(name)(work)
            if crafted:
                rehash(name)(work)
    return setup


def flip_byte(path: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        data = bytearray((work / path).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (work / path).write_bytes(bytes(data))
    return setup


def symlink_loop(work: Path) -> None:
    os.symlink("..", work / "corpus" / "loop")


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        for s in setups:
            s(work)
    return setup


def _wider_dtype(meta: dict) -> None:
    meta["dtype"] = "uint32"


def _float_dtype(meta: dict) -> None:
    meta["dtype"] = "float16"  # the same width: every file's size still fits


def _drop_fingerprint(meta: dict) -> None:
    meta["tokenizer_fingerprint"] = "0" * 16


PRETRAIN = ["pretrain", "--shards", "shards", "--set", "model.n_layer=1", "--set", "model.n_embd=16",
            "--set", "model.n_head=2", "--set", "model.n_ctx=32", "--max-steps", "2", "-o", "new"]
GEN = ["generate", "run", "-p", "the fox", "-n", "3"]
RESUME = ["pretrain", "-o", "run", "--resume", "--max-steps", "6"]
FT = ["finetune", "--init", "run", "--task", "sst2", "--train", "train.tsv", "-o", "newft", "--epochs", "1"]
CUSTOM = ["--type", "classification", "--columns", "sentence", "--label-column", "label"]


def setting(key: str, value: str) -> list[str]:
    return [*PRETRAIN, "--set", f"{key}={value}"]


# (id, command line, what the one line must name, damage done first)
CASES: list[tuple[str, list[str], str, Callable[[Path], None] | None]] = [
    # corpus and tokenizer training
    ("corpus-missing", ["tokenizer", "train", "nothere.txt", "-o", "t.json"], "nothere.txt", None),
    ("corpus-unsupported-type", ["tokenizer", "train", "book.pdf", "-o", "t.json"], "book.pdf",
     write("book.pdf", b"%PDF-1.4")),
    ("corpus-glob-matches-nothing", ["tokenizer", "train", "corpus/*.md", "-o", "t.json"], "corpus/*.md", None),
    ("corpus-empty-folder", ["tokenizer", "train", "empty", "-o", "t.json"], "empty", write("empty/.keep", "")),
    ("corpus-glob-through-symlink-loop", ["tokenizer", "train", "corpus/**/*.md", "-o", "t.json"], "corpus/**/*.md",
     symlink_loop),
    ("corpus-corrupt-gzip", ["tokenizer", "train", "bad.txt.gz", "-o", "t.json"], "bad.txt.gz",
     write("bad.txt.gz", b"\x1f\x8b\x08\x00garbage")),
    ("corpus-jsonl-bad-line", ["tokenizer", "train", "c.jsonl", "-o", "t.json"], "c.jsonl",
     write("c.jsonl", '{"text": "a b"}\n{not json\n')),
    ("corpus-jsonl-no-text-field", ["tokenizer", "train", "c.jsonl", "-o", "t.json"], "c.jsonl",
     write("c.jsonl", '{"body": "a b"}\n')),
    ("tokenizer-output-is-the-corpus", ["tokenizer", "train", "corpus/doc0.txt", "-o", "corpus/doc0.txt"],
     "corpus/doc0.txt", None),
    ("tokenizer-output-is-a-folder", ["tokenizer", "train", "corpus", "-o", "corpus"], "corpus", None),
    ("tokenizer-vocab-size-zero", ["tokenizer", "train", "corpus", "--vocab-size", "0", "-o", "t.json"],
     "vocab_size", None),
    ("tokenizer-vocab-size-negative", ["tokenizer", "train", "corpus", "--vocab-size", "-5", "-o", "t.json"],
     "vocab_size", None),
    # prepare
    ("prepare-tokenizer-missing", ["prepare", "corpus", "-t", "nope.json", "-o", "sh2"], "nope.json", None),
    ("prepare-tokenizer-not-json", ["prepare", "corpus", "-t", "bad.json", "-o", "sh2"], "bad.json",
     write("bad.json", "{not json")),
    ("prepare-tokenizer-not-a-tokenizer", ["prepare", "corpus", "-t", "bad.json", "-o", "sh2"], "bad.json",
     write("bad.json", '{"hello": 1}')),
    ("prepare-tokenizer-not-utf8", ["prepare", "corpus", "-t", "bad.json", "-o", "sh2"], "bad.json",
     write("bad.json", b"\xff\xfe\x00garbage")),
    ("prepare-into-foreign-folder", ["prepare", "corpus", "-t", "tok.json", "-o", "corpus"], "corpus", None),
    ("prepare-val-fraction-too-large", ["prepare", "corpus", "-t", "tok.json", "-o", "sh2", "--val-fraction", "1.5"],
     "val_fraction", None),
    ("prepare-val-fraction-nan", ["prepare", "corpus", "-t", "tok.json", "-o", "sh2", "--val-fraction", "nan"],
     "val_fraction", None),
    ("prepare-shard-tokens-zero", ["prepare", "corpus", "-t", "tok.json", "-o", "sh2", "--shard-tokens", "0"],
     "shard_tokens", None),
    # TOML and --set
    ("config-missing", [*PRETRAIN, "--config", "nope.toml"], "nope.toml", None),
    ("config-is-a-folder", [*PRETRAIN, "--config", "corpus"], "corpus", None),
    ("config-not-utf8", [*PRETRAIN, "--config", "bad.toml"], "bad.toml", write("bad.toml", b"[model]\nx = '\xff'\n")),
    ("config-not-toml", [*PRETRAIN, "--config", "bad.toml"], "bad.toml", write("bad.toml", "[model\n")),
    ("config-unknown-section", [*PRETRAIN, "--config", "bad.toml"], "modle", write("bad.toml", "[modle]\nn=1\n")),
    ("set-without-equals", [*PRETRAIN, "--set", "model.n_layer"], "model.n_layer", None),
    ("set-unknown-key", setting("model.n_layers", "2"), "model.n_layers", None),
    ("set-wrong-type", setting("model.n_embd", "'wide'"), "model.n_embd", None),
    ("set-setting-as-section", setting("model.n_layer.x", "2"), "n_layer", None),
    ("lr-nan", setting("train.lr", "nan"), "train.lr", None),
    ("lr-inf", setting("train.lr", "inf"), "train.lr", None),
    ("lr-negative", setting("train.lr", "-1e-3"), "train.lr", None),
    ("beta1-above-one", setting("train.beta1", "1.5"), "train.beta1", None),
    ("beta2-nan", setting("train.beta2", "nan"), "train.beta2", None),
    ("beta2-one", setting("train.beta2", "1.0"), "train.beta2", None),
    ("eps-zero", setting("train.eps", "0"), "train.eps", None),
    ("eps-nan", setting("train.eps", "nan"), "train.eps", None),
    ("weight-decay-nan", setting("train.weight_decay", "nan"), "train.weight_decay", None),
    ("weight-decay-negative", setting("train.weight_decay", "-0.1"), "train.weight_decay", None),
    ("grad-clip-inf", setting("train.grad_clip", "inf"), "train.grad_clip", None),
    ("max-minutes-nan", setting("train.max_minutes", "nan"), "train.max_minutes", None),
    ("seed-negative", setting("train.seed", "-1"), "train.seed", None),
    ("layer-norm-epsilon-zero", setting("model.layer_norm_epsilon", "0"), "model.layer_norm_epsilon", None),
    ("layer-norm-epsilon-nan", setting("model.layer_norm_epsilon", "nan"), "model.layer_norm_epsilon", None),
    ("dropout-nan", setting("model.resid_pdrop", "nan"), "model.resid_pdrop", None),
    ("n-inner-negative", setting("model.n_inner", "-5"), "model.n_inner", None),
    ("n-head-does-not-divide", setting("model.n_head", "3"), "model.n_head", None),
    ("context-too-large", setting("model.n_ctx", "1000000000000"), "model.n_ctx", None),
    ("batch-not-multiple-of-micro", [*setting("train.batch_size", "6"), "--set", "train.micro_batch_size=4"],
     "train.micro_batch_size", None),
    ("unknown-optimizer", setting("train.optimizer", "sgd"), "train.optimizer", None),
    # shards
    ("shards-missing", [*PRETRAIN[:2], "nowhere", *PRETRAIN[3:]], "nowhere", None),
    ("shards-meta-missing", PRETRAIN, "meta.json", remove("shards/meta.json")),
    ("shards-meta-not-json", PRETRAIN, "meta.json", write("shards/meta.json", "{")),
    ("shards-meta-dtype-wider", PRETRAIN, "meta.json", edit_json("shards/meta.json", _wider_dtype)),
    ("shards-meta-dtype-not-token-ids", PRETRAIN, "meta.json", edit_json("shards/meta.json", _float_dtype)),
    ("shards-ids-outside-vocabulary", PRETRAIN, "train_00000.bin", fill_bytes("shards/train_00000.bin", 0xFF)),
    ("shards-truncated", PRETRAIN, "train_00000.bin", truncate("shards/train_00000.bin", 101)),
    ("shards-tokenizer-missing", PRETRAIN, "tokenizer.json", remove("shards/tokenizer.json")),
    ("shards-of-another-tokenizer", PRETRAIN, "shards", edit_json("shards/meta.json", _drop_fingerprint)),
    # runs and checkpoints
    ("pretrain-existing-run-without-resume", [*PRETRAIN[:-1], "run"], "run", None),
    ("pretrain-into-a-folder-of-other-files", [*PRETRAIN[:-1], "corpus"], "not a genpt run", None),
    ("pretrain-into-the-users-own-config", [*PRETRAIN[:-1], "mine"], "not a genpt run",
     both(write("mine/config.json", '{"my": "settings"}'), write("mine/metrics.jsonl", "{}\n"))),
    ("pretrain-output-is-a-file", [*PRETRAIN[:-1], "tok.json"], "tok.json", None),
    ("pretrain-resume-missing-folder", ["pretrain", "-o", "nowhere", "--resume", "--shards", "shards"], "nowhere",
     None),
    ("resume-config-not-json", ["pretrain", "-o", "run", "--resume"], "config.json", write("run/config.json", "{")),
    ("generate-run-missing", ["generate", "nowhere"], "nowhere", None),
    ("checkpoint-config-missing", GEN, "config.json", remove(f"{RUN_CKPT}/config.json")),
    ("checkpoint-config-not-json", GEN, "config.json", write(f"{RUN_CKPT}/config.json", "{")),
    ("checkpoint-config-bad-setting", GEN, "model.n_head", edit_json(f"{RUN_CKPT}/config.json",
                                                                      lambda d: d["model"].update(n_head=5))),
    ("checkpoint-weights-truncated", GEN, "model.safetensors", truncate(f"{RUN_CKPT}/model.safetensors", 100)),
    ("checkpoint-weights-missing", GEN, "model.safetensors", remove(f"{RUN_CKPT}/model.safetensors")),
    ("checkpoint-tokenizer-missing", GEN, "tokenizer.json", remove(f"{RUN_CKPT}/tokenizer.json")),
    ("checkpoint-weights-bit-flipped", GEN, "step_00000004/model.safetensors",
     flip_byte(f"{RUN_CKPT}/model.safetensors")),
    ("checkpoint-manifest-damaged", GEN, "manifest.json", write(f"{RUN_CKPT}/manifest.json", "{")),
    ("perplexity-nan-weights", ["perplexity", "run", "corpus"], "NaN",
     both(poison_weights(f"{RUN_CKPT}/model.safetensors", math.nan), rehash(RUN_CKPT))),
    ("generate-inf-weights", GEN, "NaN",
     both(poison_weights(f"{RUN_CKPT}/model.safetensors", math.inf), rehash(RUN_CKPT))),
    ("resume-state-not-json", RESUME, "state.json", every_checkpoint(lambda c: write(f"{c}/state.json", "{"))),
    ("resume-state-not-json-crafted", RESUME, "state.json",
     every_checkpoint(lambda c: write(f"{c}/state.json", "{"), crafted=True)),
    ("resume-optimizer-corrupt", RESUME, "optimizer.pt",
     every_checkpoint(lambda c: write(f"{c}/optimizer.pt", b"garbage"))),
    ("resume-optimizer-corrupt-crafted", RESUME, "optimizer.pt",
     every_checkpoint(lambda c: write(f"{c}/optimizer.pt", b"garbage"), crafted=True)),
    ("resume-optimizer-malicious", RESUME, "not trusted",
     every_checkpoint(lambda c: malicious_pickle(f"{c}/optimizer.pt"), crafted=True)),
    ("resume-changes-the-model", ["pretrain", "-o", "run", "--resume", "--set", "model.n_embd=64"], "n_embd", None),
    ("resume-nan-weights", RESUME, "NaN",
     every_checkpoint(lambda c: poison_weights(f"{c}/model.safetensors", math.nan), crafted=True)),
    # generation and scoring arguments
    ("temperature-negative", [*GEN, "--temperature", "-1"], "--temperature", None),
    ("temperature-nan", [*GEN, "--temperature", "nan"], "--temperature", None),
    ("top-p-zero", [*GEN, "--top-p", "0"], "--top-p", None),
    ("top-p-above-one", [*GEN, "--top-p", "1.5"], "--top-p", None),
    ("top-p-nan", [*GEN, "--top-p", "nan"], "--top-p", None),
    ("top-k-negative", [*GEN, "--top-k", "-1"], "--top-k", None),
    ("max-new-tokens-negative", ["generate", "run", "-n", "-1"], "--max-new-tokens", None),
    ("num-samples-zero", [*GEN, "--num-samples", "0"], "--num-samples", None),
    ("num-samples-absurd", [*GEN, "--num-samples", "1000000000"], "--num-samples", None),
    ("score-empty-text", ["score", "run", "--text", ""], "--text", None),
    # task files and fine-tuning
    ("finetune-init-missing", [*FT[:2], "nowhere", *FT[3:]], "nowhere", None),
    ("finetune-train-missing", [*FT[:6], "nope.tsv", *FT[7:]], "nope.tsv", None),
    ("finetune-unknown-label", FT, "train.tsv", write("train.tsv", "sentence\tlabel\na b\t0\nc d\t7\n")),
    ("finetune-missing-column", FT, "train.tsv", write("train.tsv", "text\tlabel\na b\t0\n")),
    ("finetune-csv-ragged-row", ["finetune", "--init", "run", *CUSTOM, "--train", "t.csv", "-o", "newft"], "t.csv",
     write("t.csv", 'sentence,label\n"a b",0\n"c d,1\n')),
    ("finetune-jsonl-bad-line", ["finetune", "--init", "run", *CUSTOM, "--train", "t.jsonl", "-o", "newft"],
     "t.jsonl", write("t.jsonl", '{"sentence": "a", "label": "0"}\n{oops\n')),
    ("finetune-jsonl-not-an-object", ["finetune", "--init", "run", *CUSTOM, "--train", "t.jsonl", "-o", "newft"],
     "t.jsonl", write("t.jsonl", '["a", "0"]\n')),
    ("finetune-task-file-not-toml", [*FT[:4], "bad.toml", *FT[5:]], "bad.toml", write("bad.toml", "name = \n")),
    ("finetune-task-file-unknown-key", [*FT[:4], "bad.toml", *FT[5:]], "bad.toml",
     write("bad.toml", 'name = "x"\ntype = "classification"\ncolums = ["a"]\n')),
    ("finetune-epochs-zero", [*FT[:-1], "0"], "finetune.epochs", None),
    ("finetune-lr-nan", [*FT, "--lr", "nan"], "finetune.lr", None),
    ("finetune-batch-size-zero", [*FT, "--batch-size", "0"], "finetune.batch_size", None),
    ("finetune-unknown-setting", [*FT, "--set", "finetune.lrr=1"], "finetune.lrr", None),
    ("finetune-weight-decay-inf", [*FT, "--set", "finetune.weight_decay=inf"], "finetune.weight_decay", None),
    ("finetune-transfer-too-many-layers", [*FT, "--transfer-layers", "9"], "--transfer-layers", None),
    ("finetune-existing-run-without-resume", [*FT[:-3], "ft", "--epochs", "1"], "ft", None),
    ("finetune-into-a-folder-of-other-files", [*FT[:-3], "corpus", "--epochs", "1"], "not a genpt run", None),
    ("finetune-resume-missing-folder", [*FT[:-3], "nowhere", "--epochs", "1", "--resume"], "nowhere", None),
    ("evaluate-data-missing", ["evaluate", "ft", "--data", "nope.tsv"], "nope.tsv", None),
    ("evaluate-data-not-utf8", ["evaluate", "ft", "--data", "d.tsv"], "d.tsv",
     write("d.tsv", b"sentence\tlabel\n\xff\xfe\t0\n")),
    ("evaluate-pretrained-model", ["evaluate", "run", "--data", "dev.tsv"], "run", None),
    ("evaluate-task-of-another-shape", ["evaluate", "ft", "--task", "mrpc", "--data", "dev.tsv"], "mrpc", None),
    ("evaluate-more-labels-than-the-head", ["evaluate", "ft", "--task", "three.toml", "--data", "dev.tsv"],
     "three", write("three.toml", 'name = "three"\ntype = "classification"\ncolumns = ["sentence"]\n'
                    'label_column = "label"\nlabels = ["0", "1", "2"]\n')),
    ("evaluate-labels-the-model-never-saw", ["evaluate", "ft", "--task", "other.toml", "--data", "dev.tsv"],
     "other", write("other.toml", 'name = "other"\ntype = "classification"\ncolumns = ["sentence"]\n'
                    'label_column = "label"\nlabels = ["neg", "pos"]\n')),
    ("predict-output-is-the-input", ["predict", "ft", "--input", "dev.tsv", "--output", "dev.tsv"], "dev.tsv", None),
    ("predict-output-is-the-input-by-another-path",
     ["predict", "ft", "--input", "dev.tsv", "--output", "./corpus/../dev.tsv"], "dev.tsv", None),
    ("predict-input-missing", ["predict", "ft", "--input", "nope.tsv", "--output", "p.jsonl"], "nope.tsv", None),
    ("predict-checkpoint-malicious-weights", ["predict", "ft", "--input", "dev.tsv", "--output", "p.jsonl"],
     "model.safetensors", write(f"{FT_BEST}/model.safetensors", b"\x80\x04garbage")),
    # serving arguments (refused before the server starts)
    ("serve-run-missing", ["serve", "nowhere"], "nowhere", None),
    ("serve-max-batch-zero", ["serve", "run", "--max-batch", "0"], "--max-batch", None),
    ("serve-timeout-zero", ["serve", "run", "--timeout", "0"], "--timeout", None),
    ("serve-timeout-nan", ["serve", "run", "--timeout", "nan"], "--timeout", None),
    ("serve-max-wait-nan", ["serve", "run", "--max-wait-ms", "nan"], "--max-wait-ms", None),
    ("serve-nan-weights", ["serve", "run"], "NaN",
     both(poison_weights(f"{RUN_CKPT}/model.safetensors", math.nan), rehash(RUN_CKPT))),
    # converted folders
    ("convert-path-missing", ["convert", "nowhere", "-o", "out"], "nowhere", None),
    ("convert-hf-without-config", ["convert", "hf", "--from", "hf", "-o", "out"], "hf", write("hf/README", "x")),
    ("convert-hf-malicious-bin", ["convert", "hf", "--from", "hf", "-o", "out"], "not trusted",
     both(write("hf/config.json", json.dumps({"model_type": "openai-gpt", "n_embd": 16, "n_layer": 1, "n_head": 2,
                                               "n_positions": 32, "vocab_size": 300})),
          malicious_pickle("hf/pytorch_model.bin"))),
    ("convert-into-non-empty-folder", ["convert", "run", "--to", "hf", "-o", "corpus"], "corpus", None),
    ("convert-n-ctx-negative", ["convert", "run", "--to", "hf", "-o", "out", "--n-ctx", "-4"], "--n-ctx", None),
]


@pytest.mark.parametrize("args, names, damage", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_touches_nothing(workdir, capsys, stderr_logging, args, names, damage):
    if damage is not None:
        damage(workdir)
    before = tree(workdir)
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("genpt: error: ") and names in lines[0], lines[0]
    assert "weights_only=False" not in lines[0] and "Traceback" not in err
    assert tree(workdir) == before
    assert not (workdir / "pwned.txt").exists()


def test_the_matrix_covers_at_least_80_cases():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


def test_evaluate_matches_labels_by_name_not_position(workdir, capsys):
    """The same dev file scored as task `1,0` (labels listed the other way round) gives the same accuracy."""
    assert main(["evaluate", "ft", "--data", "dev.tsv", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "ft", "--task", "flipped.toml", "--data", "dev.tsv", "--json"]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["accuracy"] == plain["accuracy"]


def test_the_matrix_sees_genpt_log_lines_on_stderr(stderr_logging, capsys):
    """Without this, a refusal preceded by log lines would pass the one-line check unseen."""
    logging.getLogger("genpt").warning("a warning")
    assert capsys.readouterr().err == "a warning\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: a permission cannot be denied to it")
def test_an_output_folder_without_write_permission_is_refused_before_training(workdir, capsys, stderr_logging):
    (workdir / "locked").mkdir()
    (workdir / "locked").chmod(0o555)
    try:
        before = tree(workdir)
        assert main(["tokenizer", "train", "corpus", "-o", "locked/t.json"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "permission denied" in lines[0], lines
        assert tree(workdir) == before
    finally:
        (workdir / "locked").chmod(0o755)
