"""The `genpt` command: parses arguments and calls the library; holds no logic of its own."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import statistics
import sys

from genpt.config import STRATEGIES
from genpt.data.tasks import TYPES
from genpt.errors import GenptError, Interrupted
from genpt.gpt1_tokenizer import PIPELINES
from genpt.recipes import RECIPES, recipe

log = logging.getLogger("genpt")
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from genpt.data.corpus import train_tokenizer
    from genpt.data.documents import expand_inputs
    from genpt.outputs import check_output_file

    check_output_file(args.output, expand_inputs(args.inputs))
    tokenizer = train_tokenizer(args.inputs, args.vocab_size, strip_gutenberg=args.strip_gutenberg)
    tokenizer.save(args.output)
    print(f"tokenizer with {tokenizer.vocab_size} ids written to {args.output}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from genpt.data.corpus import prepare
    from genpt.tokenizer import Tokenizer

    stats = prepare(
        args.inputs, Tokenizer.load(args.tokenizer), args.output, val_fraction=args.val_fraction,
        workers=args.workers, text_field=args.text_field, strip_gutenberg=args.strip_gutenberg,
        shard_tokens=args.shard_tokens, seed=args.seed,
    )
    print(
        f"{stats.documents} documents, {stats.train_tokens:,} train + {stats.val_tokens:,} val tokens "
        f"written to {stats.output_dir} in {stats.seconds:.1f} s ({stats.mb_per_s:.2f} MB/s)"
    )


def cmd_pretrain(args: argparse.Namespace) -> None:
    from genpt.train.distributed import is_main_process
    from genpt.train.pretrain import pretrain, run_config

    overrides = list(args.set)
    for flag, key in ((args.shards, "data.shards"), (args.max_steps, "train.max_steps"),
                      (args.max_minutes, "train.max_minutes"), (args.strategy, "train.strategy")):
        if flag is not None:
            overrides.append(f"{key}={json.dumps(flag)}")
    config = run_config(args.output, overrides, resume=args.resume, config_file=args.config,
                        base=recipe(args.recipe) if args.recipe else None)
    result = pretrain(config, args.output, resume=args.resume)
    summary = {"step": result.step, "tokens": result.tokens_seen, "seconds": round(result.seconds, 1),
               "checkpoint": str(result.checkpoint), **{f"val_{k}": v for k, v in result.last_eval.items()}}
    if is_main_process():  # under torchrun, rank 0 speaks for the job
        print(json.dumps(summary))


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    from genpt.generate import check_sampling, generate
    from genpt.load import load_model

    check_sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, rows=len(args.prompt or [""]) * args.num_samples)
    loaded = load_model(args.run)
    model, tokenizer = loaded.lm, loaded.tokenizer
    prompts = [tokenizer.encode(text) or [tokenizer.eot_id] for text in args.prompt or [""]]
    generator = torch.Generator().manual_seed(args.seed)
    # Every prompt and sample in one batch: generate left-pads prompts of different lengths.
    rows = generate(model, [ids for ids in prompts for _ in range(args.num_samples)], args.max_new_tokens,
                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, generator=generator,
                    eos_id=tokenizer.eot_id)
    for row in rows:
        print(tokenizer.decode(row))


def cmd_perplexity(args: argparse.Namespace) -> None:
    from genpt.load import load_model
    from genpt.scoring import perplexity_of_files

    loaded = load_model(args.run)
    result = perplexity_of_files(loaded.lm, loaded.tokenizer, args.inputs, strip_gutenberg=args.strip_gutenberg)
    if args.json:
        print(json.dumps({"tokens": result.tokens, "loss": result.loss, "perplexity": result.perplexity}))
    else:
        print(f"perplexity {result.perplexity:.3f} (loss {result.loss:.4f} nats/token over {result.tokens:,} tokens)")


def cmd_score(args: argparse.Namespace) -> None:
    from genpt.load import load_model
    from genpt.scoring import token_logprobs

    loaded = load_model(args.run)
    model, tokenizer = loaded.lm, loaded.tokenizer
    ids = tokenizer.encode(args.text)
    if not ids:
        raise GenptError("--text is empty: nothing to score")
    logprobs = token_logprobs(model, ids)
    rows = [{"id": i, "token": tokenizer.decode([i]), "logprob": lp}
            for i, lp in zip(ids, [None, *logprobs], strict=True)]
    if args.json:
        print(json.dumps({"ids": ids, "logprobs": [None, *logprobs], "tokens": rows}))
    else:
        for row in rows:
            lp = "" if row["logprob"] is None else f"{row['logprob']:.4f}"
            print(f"{row['id']:>7}  {lp:>9}  {row['token']!r}")


def task_from_args(args: argparse.Namespace):
    """A built-in task by name, a TOML task file, or a custom task described by flags."""
    from genpt.data.readers import infer_labels
    from genpt.data.tasks import builtin_task, custom_task, task_from_toml

    train_file = getattr(args, "train", None)

    if args.type:
        columns = [c.strip() for c in args.columns.split(",")] if args.columns else []
        if not args.header:
            columns = [int(c) if c.isdigit() else c for c in columns]
        label = args.label_column
        if label is not None and not args.header and label.isdigit():
            label = int(label)
        spec = custom_task(
            name=args.task or "custom", type=args.type, format=args.format, columns=columns,
            label_column=label, labels=args.labels.split(",") if args.labels else None, header=args.header,
        )
        return spec if train_file is None else infer_labels(spec, train_file)
    if args.task is None:
        raise GenptError("--task is required: a built-in task name, a TOML task file, or a name with --type")
    if args.task.endswith(".toml"):
        spec = task_from_toml(args.task)
        return spec if train_file is None else infer_labels(spec, train_file)
    return builtin_task(args.task)


def add_task_flags(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("task", "a built-in task (sst2, cola, mrpc, stsb, ...), a TOML task file, "
                             "or a custom task described by --type and --columns")
    g.add_argument("--task", required=required, help="built-in name or a .toml task file")
    g.add_argument("--type", choices=TYPES, help="custom task: how the inputs are laid out")
    g.add_argument("--columns", help="custom task: the text columns, comma-separated, in order")
    g.add_argument("--label-column", help="custom task: the label column")
    g.add_argument("--labels", help="custom task: the label values, comma-separated (default: those in --train)")
    g.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="custom task: file format (default: by extension)")
    g.add_argument("--no-header", dest="header", action="store_false", help="custom task: files have no header row")


def cmd_finetune(args: argparse.Namespace) -> None:
    from genpt.config import load_finetune_config
    from genpt.train.distributed import is_main_process
    from genpt.train.finetune import finetune

    flags = {"lm_coef": args.lm_coef, "scratch": args.scratch or None, "transfer_layers": args.transfer_layers,
             "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
             "strategy": args.strategy}
    overrides = [*args.set, *(f"finetune.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None)]
    cfg = load_finetune_config(args.config, overrides)
    result = finetune(args.init, task_from_args(args), args.train, args.dev, args.output, cfg, resume=args.resume)
    if not is_main_process():  # under torchrun, rank 0 speaks for the job
        return
    for epoch, row in enumerate(result.epochs, 1):
        print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))
    print(json.dumps({"output": str(result.run_dir), "best_epoch": result.best_epoch, "best": result.best,
                      "truncated": result.truncated, "seconds": round(result.seconds, 1)}))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from genpt.data.readers import read_examples
    from genpt.data.tasks import check_task_fits
    from genpt.evaluation import score
    from genpt.load import load_finetuned
    from genpt.predict import predict

    finetuned = load_finetuned(args.run)
    task = finetuned.task if args.task is None and not args.type else task_from_args(args)
    task = check_task_fits(task, finetuned.task, finetuned.info.head.n_out)
    examples = read_examples(task, args.data)
    result = predict(finetuned, examples)
    values = score(task, result.predicted, examples)
    if args.json:
        print(json.dumps({"task": task.name, "examples": len(examples), "truncated": result.truncated, **values}))
    else:
        print(f"{task.name}: {len(examples)} examples  " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))


def cmd_predict(args: argparse.Namespace) -> None:
    from genpt.data.readers import read_examples
    from genpt.load import load_finetuned
    from genpt.outputs import check_output_file
    from genpt.predict import predict, write_predictions

    check_output_file(args.output, [args.input])
    finetuned = load_finetuned(args.run)
    examples = read_examples(finetuned.task, args.input, require_labels=False)
    result = predict(finetuned, examples)
    write_predictions(args.output, finetuned.task, examples, result)
    print(f"{len(examples)} predictions written to {args.output}")


def cmd_convert(args: argparse.Namespace) -> None:
    from genpt.interop import convert

    out = convert(args.path, args.output, source=args.source, target=args.target, n_ctx=args.n_ctx,
                  n_head=args.n_head, pipeline=args.tokenizer, seed=args.seed)
    print(f"{args.path} ({args.source or 'detected'}) converted to {args.target}: {out}")


def cmd_serve(args: argparse.Namespace) -> None:
    from genpt.serve import Limits, serve

    limits = Limits(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
                    max_items=args.max_items, max_item_tokens=args.max_item_tokens,
                    max_new_tokens=args.max_new_tokens, timeout=args.timeout, threads=args.threads)
    serve(args.run, host=args.host, port=args.port, limits=limits, name=args.name, dtype=args.dtype)


def cmd_demo(args: argparse.Namespace) -> None:
    from genpt.demo import run_demo

    result = run_demo(corpus=args.corpus, output=args.output, minutes=args.minutes, fresh=args.fresh)
    print(f"pre-trained {result.steps} steps ({result.tokens:,} tokens, {result.dtype}) in {result.run_dir}")
    print(f"validation perplexity: untrained {result.untrained_perplexity:,.1f} -> "
          f"pre-trained {result.perplexity:,.1f} ({result.bits_per_byte:.2f} bits per byte)")
    print(f"sample: {result.sample}")
    if result.genre_accuracy:
        train, dev = result.genre_sizes
        print(f"genre of a passage (comedy / history / tragedy), {train} training passages, {dev} dev passages "
              "from six plays never seen; dev accuracy after the last epoch, over seeds:")
        for setting, runs in result.genre_accuracy.items():
            each = ", ".join(f"{100 * a:.1f}" for a in runs)
            print(f"  {setting:>12}: {100 * statistics.mean(runs):.1f}% ± {100 * statistics.stdev(runs):.1f} "
                  f"({each})")
        gaps = [p - s for p, s in zip(*result.genre_accuracy.values(), strict=True)]
        print(f"  pre-training gains {100 * statistics.mean(gaps):+.1f} points (per seed: "
              f"{', '.join(f'{100 * g:+.1f}' for g in gaps)})")
    print(f"report (figures of the run{' and the comparison' if result.genre_accuracy else ''}): {result.report}")


def cmd_zeroshot(args: argparse.Namespace) -> None:
    from genpt.study import zeroshot as zs

    if args.every_checkpoint:
        spec = zs.ZeroShotData(args.task, args.data, args.train, args.best, args.limit)
        rows, path = zs.score_checkpoints(args.run, spec)
        for row in rows:
            where = (f"{row['reference']} reference{'':>14}" if row.get("reference")
                     else f"step {row['step']:>8}  {row['tokens']:>12,} tokens")
            print(json.dumps(row) if args.json else f"{where}  {row['task']} {row['metric']} {row['value']:.4f}")
        print(f"{len(rows)} points written to {path}", file=sys.stderr)
        return
    result = zs.score_run(args.run, args.task, args.data, args.train, args.limit, unigram=args.unigram)
    if args.json:
        print(json.dumps(zs.result_dict(result)))
    else:
        print(f"{result.task}: {result.examples} examples  "
              + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()) + f"\n  ({result.detail})")


def cmd_report(args: argparse.Namespace) -> None:
    from genpt.study.report import dev_files_from, write_report

    path = write_report(args.runs, args.output, dev_files_from(args.dev))
    print(f"report written to {path}")


def cmd_study(args: argparse.Namespace) -> None:
    from genpt.study.run import run_study

    path = run_study(args.recipe, args.output, seeds=args.seeds, data_root=args.data, workers=args.workers,
                     report=not args.worker, only=args.only)
    if path is not None:
        print(f"report written to {path}")


def cmd_doctor(args: argparse.Namespace) -> None:
    from genpt.config import load_pretrain_config
    from genpt.doctor import diagnose, format_diagnosis

    config = load_pretrain_config(args.config, list(args.set))
    batch = args.batch or min(config.train.micro_batch, 8)
    print(format_diagnosis(diagnose(config.model, batch, args.remeasure)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genpt", description="Generative pre-training and discriminative fine-tuning (GPT-1)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("tokenizer", help="train a BPE tokenizer").add_subparsers(dest="action", required=True)
    p = tok.add_parser("train", help="train a byte-level BPE on text files")
    p.add_argument("inputs", nargs="+", help="files, folders or globs (.txt, .jsonl, .gz)")
    p.add_argument("--vocab-size", type=int, default=16384)
    p.add_argument("--output", "-o", default="tokenizer.json")
    p.add_argument("--strip-gutenberg", action="store_true", help="drop Project Gutenberg headers and licences")
    p.set_defaults(func=cmd_tokenizer_train)

    p = sub.add_parser("prepare", help="turn text into token shards")
    p.add_argument("inputs", nargs="+", help="files, folders or globs (.txt, .jsonl, .gz)")
    p.add_argument("--tokenizer", "-t", required=True, help="tokenizer.json")
    p.add_argument("--output", "-o", required=True, help="folder for the shards")
    p.add_argument("--val-fraction", type=float, default=0.01, help="share of documents held out")
    p.add_argument("--workers", type=int, default=0,
                   help="encoding processes (0: choose; in-process on all cores below 1 GB when tiktoken applies)")
    p.add_argument("--text-field", default="text", help="field holding the text in .jsonl files")
    p.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard file")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--strip-gutenberg", action="store_true", help="drop Project Gutenberg headers and licences")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("pretrain", help="pre-train a language model on token shards")
    p.add_argument("--config", "-c", help="TOML settings file ([model], [train], [data])")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="start from named settings found by measurement (genpt/recipes.py), under --config and --set; "
                        "cpu: a 4-layer model, Muon, no dropout, linear decay, bf16 where faster (for --max-minutes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set model.n_layer=2 (repeatable)")
    p.add_argument("--shards", help="prepared shards folder (data.shards)")
    p.add_argument("--output", "-o", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--max-steps", type=int, help="train.max_steps")
    p.add_argument("--max-minutes", type=float, help="train.max_minutes")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="under torchrun: replicate the model (ddp, default) or shard it (fsdp); train.strategy")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("generate", help="sample text from a model")
    p.add_argument("run", help="run or checkpoint folder")
    p.add_argument("--prompt", "-p", action="append", help="repeat for several prompts, sampled as one batch")
    p.add_argument("--max-new-tokens", "-n", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="0 for greedy decoding")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=1)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("perplexity", help="perplexity of a model on text files")
    p.add_argument("run", help="run or checkpoint folder")
    p.add_argument("inputs", nargs="+", help="files, folders or globs (.txt, .jsonl, .gz)")
    p.add_argument("--strip-gutenberg", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_perplexity)

    p = sub.add_parser("score", help="each token's log-probability given the tokens before it")
    p.add_argument("run", help="run or checkpoint folder")
    p.add_argument("--text", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("finetune", help="fine-tune a pre-trained model on a labeled task")
    p.add_argument("--config", "-c", help="TOML settings file ([finetune])")
    p.add_argument("--init", required=True, help="pre-trained run or checkpoint folder")
    p.add_argument("--train", required=True, help="training file")
    p.add_argument("--dev", help="development file: metrics after each epoch, best epoch kept")
    p.add_argument("--output", "-o", required=True, help="folder for the fine-tuned model")
    p.add_argument("--lm-coef", type=float, help="lambda in L3 = L2 + lambda L1 (default 0.5; 0: no auxiliary LM)")
    p.add_argument("--scratch", action="store_true", help="random initialisation: no pre-training")
    p.add_argument("--transfer-layers", type=int, help="transfer the embeddings and the first N blocks only")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning run")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="under torchrun: replicate the model (ddp, default) or shard it (fsdp)")
    p.add_argument("--set", action="append", default=[], metavar="finetune.KEY=VALUE")
    add_task_flags(p, required=False)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="a fine-tuned model's metrics on labeled data")
    p.add_argument("run", help="fine-tuned run or checkpoint folder")
    p.add_argument("--data", required=True, help="labeled file")
    p.add_argument("--json", action="store_true")
    add_task_flags(p, required=False)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label new data with a fine-tuned model")
    p.add_argument("run", help="fine-tuned run or checkpoint folder")
    p.add_argument("--input", "-i", required=True, help="file in the task's format (labels not needed)")
    p.add_argument("--output", "-o", required=True, help="predictions: .jsonl, .tsv or .csv")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="convert a model between genpt, the original GPT-1 release and Hugging Face")
    p.add_argument("path", help="a genpt run or checkpoint, a release folder (params_shapes.json + params_*.npy) "
                   "or a Hugging Face OpenAIGPT folder")
    p.add_argument("--from", dest="source", choices=["openai", "hf", "genpt"],
                   help="format of PATH (default: detected)")
    p.add_argument("--to", dest="target", choices=["genpt", "hf", "openai"], default="genpt", help="format to write")
    p.add_argument("--output", "-o", required=True, help="folder to write (must not exist or be empty)")
    p.add_argument("--n-ctx", type=int, help="keep only the first N position embeddings")
    p.add_argument("--n-head", type=int, default=12, help="attention heads of a release model (not recorded in it)")
    p.add_argument("--tokenizer", choices=list(PIPELINES),
                   help="GPT-1 tokenizer pipeline: release (ftfy + spaCy, as the original) or transformers (as "
                   "transformers 5.x); default: release for --from openai, transformers for --from hf")
    p.add_argument("--seed", type=int, default=0, help="seed of the new special-token embeddings, N(0, 0.02)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("serve", help="an HTTP API (OpenAI-compatible completions) and a page to try a model")
    p.add_argument("run", help="run, checkpoint, fine-tuned, Hugging Face or GPT-1 release folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", help="the model's id in the API (default: the folder's name)")
    p.add_argument("--max-batch", type=int, default=32, help="items per forward pass; 1 turns batching off")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more items")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--max-items", type=int, default=64, help="texts per request (prompts x n for completions)")
    p.add_argument("--max-item-tokens", type=int, help="tokens per text (default: the model's context)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="the largest max_tokens a completion may ask")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a request may take")
    p.add_argument("--threads", type=int, help="PyTorch threads for inference (default: PyTorch's choice)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="weights' precision (bfloat16: faster batches on CPUs with AMX; not GPT-1's)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("zeroshot", help="a pre-trained model's task score without fine-tuning (paper section 5)")
    p.add_argument("run", help="pre-training run or checkpoint folder")
    p.add_argument("--task", required=True, choices=["sst2", "cola", "story_cloze", "wnli", "cola_slor",
                                                      "story_cloze_pmi", "sst2_verdict"],
                   help="a heuristic of the paper's section 5, or a frequency-corrected one: cola_slor (each token's "
                   "log-probability less a unigram model's of RUN's shards), story_cloze_pmi (less the ending's read "
                   "alone); or sst2_verdict (\" It was great.\" against \" It was terrible.\" after the sentence)")
    p.add_argument("--data", required=True, help="the task's labeled file (e.g. GLUE's dev.tsv)")
    p.add_argument("--train", help="the task's training file: CoLA's threshold is chosen on it (required), and "
                   "with sst2 (sst2_verdict) the threshold on the positive/negative margin (default: 0, the paper's "
                   "rule)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N examples of each file")
    p.add_argument("--every-checkpoint", action="store_true",
                   help="score each checkpoint of RUN, writing RUN/zeroshot.jsonl (the curve `genpt report` draws)")
    p.add_argument("--best", type=float, help="with --every-checkpoint: the best fine-tuned score, which "
                   "normalises the curve (0 at chance, 1 at it)")
    p.add_argument("--unigram", action="store_true", help="score a unigram model of the tokens RUN was trained on "
                   "instead (word frequencies alone: the level a model must rise above)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("report", help="figures and a Markdown page from pre-training and fine-tuning runs")
    p.add_argument("runs", nargs="+", help="run folders: pre-training runs and fine-tuned folders")
    p.add_argument("--output", "-o", required=True, help="folder for report.md and its figures")
    p.add_argument("--dev", action="append", default=[], metavar="TASK=FILE",
                   help="a task's dev file: its classifiers' confusion matrices are drawn (repeatable)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("study", help="the paper's ablations, transfer and zero-shot curves as one resumable job")
    p.add_argument("--recipe", required=True, help="a shipped recipe (tiny, cpu, gpu) or a .toml file")
    p.add_argument("--output", "-o", required=True, help="study folder: one sub-folder a stage, then report.md")
    p.add_argument("--data", default=".", help="folder the recipe's relative paths start from (the shared data)")
    p.add_argument("--seeds", type=int, help="fine-tuning seeds per setting (default: the recipe's)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes that share the stages, each with its share of the CPU's threads (default 1)")
    p.add_argument("--only", choices=("shards", "report"),
                   help="shards: make the tokenizer and token shards, then stop (prepare here, carry the folder to "
                        "a GPU machine); report: run no stage, report the finished ones (a study stopped part way)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers' processes: no report
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="the whole method on a public-domain corpus, on the CPU, in minutes")
    p.add_argument("--corpus", help="your own text (files, folders, globs) instead of Shakespeare")
    p.add_argument("--output", "-o", default="runs/demo")
    p.add_argument("--minutes", type=float, default=3.0, help="pre-training time budget")
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing finished stages")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("doctor", help="the CPU, and the kernels and precision chosen for a model on it, with timings")
    p.add_argument("--config", help="a pretrain TOML file (default: GPT-1's settings)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set model.n_layer=6 (repeatable)")
    p.add_argument("--batch", type=int, default=0,
                   help="sequences per forward pass (default: the config's micro-batch, at most 8; choices are per "
                        "shape, so give a run's own to see its choices)")
    p.add_argument("--remeasure", action="store_true", help="forget this CPU's cached choices and measure again")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if args.verbose:  # genpt's own details; the libraries' (matplotlib's font search, say) stay out
        log.setLevel(logging.DEBUG)
    try:
        args.func(args)
    except GenptError as e:
        print(f"genpt: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"genpt: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("genpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`genpt score ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141
    except OSError as e:
        if e.errno not in _USER_ERRNOS:
            raise
        # A full disk or a permission missing anywhere: the user's to fix, so one line, as for a bad input.
        where = f"{e.filename}: " if e.filename else ""
        print(f"genpt: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    return 0
