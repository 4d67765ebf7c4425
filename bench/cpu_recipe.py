"""The CPU pre-training recipe, by measurement: throughput per dtype, then short runs compared at equal steps.

On a machine whose cores are shared, wall-clock time is noise; so candidates are compared at equal
optimizer steps (equal tokens where the batch is equal), and the time a recipe needs is the step
count divided by a throughput measured back to back with its peers (`throughput`, alternating
rounds in one process). Each `run` pre-trains through genpt's own loop, then evaluates held-out
perplexity AND bits per byte (comparable across vocabularies) on fixed validation windows, and
appends one JSON line to `--results`.

    python bench/cpu_recipe.py demo-data -o runs/sweep/demo                      # the demo's corpus
    python bench/cpu_recipe.py throughput --shape 4,256,4,128,8192,32 --optimizer muon --rounds 5
    python bench/cpu_recipe.py run --shards data/shards --steps 300 --name muon-3e-3 \\
        --results bench/results/cpu-recipe-2026-12-01/books.jsonl --set train.optimizer=muon ...
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from workers import cpu_name


def parse_shape(text: str) -> dict:
    n_layer, n_embd, n_head, n_ctx, vocab, batch = (int(x) for x in text.split(","))
    return dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_ctx=n_ctx, vocab=vocab, batch=batch)


def throughput(args: argparse.Namespace) -> None:
    """Training tokens/s of one shape in float32 and in bf16 autocast, rounds alternating in one process."""
    from genpt.config import ModelConfig, TrainConfig
    from genpt.model import GPT
    from genpt.train.optimizers import make_optimizer
    from genpt.train.precision import time_train_step

    s = parse_shape(args.shape)
    config = ModelConfig(vocab_size=s["vocab"], n_layer=s["n_layer"], n_embd=s["n_embd"], n_head=s["n_head"],
                         n_ctx=s["n_ctx"])
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = GPT(config).train()
    optimizer = make_optimizer(model, TrainConfig(optimizer=args.optimizer, lr=1e-4), device)
    ids = torch.randint(0, s["vocab"], (s["batch"], s["n_ctx"]))
    seconds: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(args.rounds):
        for dtype in seconds:
            for i in range(args.warmup + args.steps):
                elapsed = time_train_step(model, optimizer, ids, dtype)
                if i >= args.warmup:
                    seconds[dtype].append(elapsed)
    tokens = s["batch"] * s["n_ctx"]
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "shape": s, "optimizer": args.optimizer,
              "params_m": round(model.num_parameters() / 1e6, 2)}
    for dtype, times in seconds.items():
        result[f"{dtype}_tok_s"] = round(tokens / statistics.median(times))
    result["bf16_over_fp32"] = round(result["bfloat16_tok_s"] / result["float32_tok_s"], 2)
    print(json.dumps(result))
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")


def bytes_per_token(shards: Path) -> float:
    """UTF-8 bytes per token of the validation split: bits per byte = loss / ln 2 / this."""
    from genpt.data.corpus import TokenShards
    from genpt.tokenizer import Tokenizer

    val = TokenShards(shards, "val")
    tokenizer = Tokenizer.load(shards / "tokenizer.json")
    ids = val.read(0, len(val)).tolist()
    return len(tokenizer.decode(ids).encode("utf-8")) / len(ids)


def run(args: argparse.Namespace) -> None:
    """Pre-train with the given settings for `--steps` steps, then measure held-out perplexity and bits per byte."""
    from genpt.config import load_pretrain_config
    from genpt.data.corpus import TokenShards
    from genpt.load import load_lm as load
    from genpt.train.metrics_log import read_metrics
    from genpt.train.pretrain import pretrain, validation

    shards = Path(args.shards)
    settings = [f"data.shards={json.dumps(str(shards))}", f"train.max_steps={args.steps}",
                f"train.eval_interval={args.eval_interval or args.steps}",
                f"train.checkpoint_interval={args.eval_interval or args.steps}", "train.eval_batches=8", *args.set]
    config = load_pretrain_config(None, settings)
    run_dir = Path(args.output or f"runs/sweep/{args.name}")
    started = time.monotonic()
    result = pretrain(config, run_dir, resume=True, progress=False)
    wall = time.monotonic() - started
    model = load(run_dir).eval()
    evaluate = validation(TokenShards(shards, "val"), 32, config.model.n_ctx, args.eval_batches)
    with torch.no_grad():
        loss = evaluate(model)["loss"]
    rates = [r["tokens_per_s"] for r in read_metrics(run_dir) if r.get("split") == "train" and "tokens_per_s" in r]
    row = {"name": args.name, "settings": args.set, "steps": result.step, "tokens": result.tokens_seen,
           "val_loss": round(loss, 4), "perplexity": round(math.exp(loss), 1),
           "bits_per_byte": round(loss / math.log(2) / bytes_per_token(shards), 4),
           "tok_s_median": round(statistics.median(rates)) if rates else None, "dtype": config.train.dtype,
           "params_m": round(model.num_parameters() / 1e6, 2), "wall_s": round(wall), "cpu": cpu_name()}
    print(json.dumps(row))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")


def demo_data(args: argparse.Namespace) -> None:
    """The demo's tokenizer and shards (8,192 ids, whole plays held out), as `genpt demo` makes them."""
    from genpt.data.corpus import prepare
    from genpt.demo import DEMO_VOCAB, corpus_inputs
    from genpt.tokenizer import Tokenizer

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    inputs, _, _ = corpus_inputs(None)
    Tokenizer.train(inputs, DEMO_VOCAB, strip_gutenberg=True).save(out / "tokenizer.json")
    prepare(inputs, Tokenizer.load(out / "tokenizer.json"), out / "shards", val_fraction=0.1, strip_gutenberg=True)


def genre(args: argparse.Namespace) -> None:
    """Fine-tune on the demo's genre task (dev: six held-out plays) with the given settings; one JSON line."""
    from genpt.config import FinetuneConfig
    from genpt.datasets.folio_genres import balanced, genre_examples, genre_task, split_plays
    from genpt.datasets.shakespeare import fetch_shakespeare
    from genpt.demo import GENRE_PER_PLAY
    from genpt.train.finetune import finetune

    train_plays, dev_plays = split_plays(fetch_shakespeare())
    train = balanced(genre_examples(train_plays, GENRE_PER_PLAY[0]))
    dev = genre_examples(dev_plays, GENRE_PER_PLAY[1])
    cfg = FinetuneConfig(lr=args.lr, epochs=args.epochs, lm_coef=args.lm_coef, clf_pdrop=args.clf_pdrop,
                         scratch=args.scratch, seed=args.seed)
    started = time.monotonic()
    result = finetune(args.init, genre_task(), None, None, args.output, cfg, train_examples=train, dev_examples=dev,
                      progress=False)
    row = {"name": args.name, "init": args.init, "lr": args.lr, "epochs": args.epochs, "lm_coef": args.lm_coef,
           "clf_pdrop": args.clf_pdrop, "scratch": args.scratch, "seed": args.seed,
           "dev_accuracy_per_epoch": [round(e["accuracy"], 4) for e in result.epochs],
           "best": round(result.best["accuracy"], 4), "wall_s": round(time.monotonic() - started), "cpu": cpu_name()}
    print(json.dumps(row))
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput", help="tokens/s in float32 and bf16 autocast at one shape")
    t.add_argument("--shape", required=True, help="n_layer,n_embd,n_head,n_ctx,vocab,batch")
    t.add_argument("--optimizer", default="adamw", choices=("adamw", "muon"))
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--steps", type=int, default=5, help="timed steps per round and dtype")
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--results", help="append the JSON line here")
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    r = sub.add_parser("run", help="one short pre-training run and its held-out perplexity and bits per byte")
    r.add_argument("--shards", required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--results", required=True)
    r.add_argument("--output", help="run folder (default runs/sweep/NAME)")
    r.add_argument("--eval-batches", type=int, default=40, help="validation batches of 32 windows")
    r.add_argument("--eval-interval", type=int, default=0,
                   help="steps between the run's own evaluations (8 batches) and checkpoints (0: at the end only)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default); on cores shared "
                   "with other jobs one thread a run avoids OpenMP's barrier stalls")
    d = sub.add_parser("demo-data", help="the demo's tokenizer and shards")
    d.add_argument("--output", "-o", required=True)
    g = sub.add_parser("genre", help="fine-tune on the demo's genre task and report dev accuracy per epoch")
    g.add_argument("--init", required=True)
    g.add_argument("--output", "-o", required=True)
    g.add_argument("--name", required=True)
    g.add_argument("--results", required=True)
    g.add_argument("--lr", type=float, default=2.5e-4)
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--lm-coef", type=float, default=0.5)
    g.add_argument("--clf-pdrop", type=float, default=0.1)
    g.add_argument("--scratch", action="store_true")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    {"throughput": throughput, "run": run, "demo-data": demo_data, "genre": genre}[args.command](args)


if __name__ == "__main__":
    main()
