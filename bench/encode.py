"""Byte-level BPE encoding speed: genpt's `Tokenizer.encode_batch` against Hugging Face `tokenizers` and tiktoken.

All three encode the Project Gutenberg books in ../shared/data/gutenberg (one text per book) with the same
vocabulary: genpt's own byte-level BPE with 8192 merges, trained on those books (or `--tokenizer`). The
contenders are

- `tokenizers`: `encode_batch_fast` of the Hugging Face tokenizer inside genpt's `Tokenizer` (what genpt
  used before it went through tiktoken, and what it still uses where tiktoken would not be exact);
- `genpt`: `Tokenizer.encode_batch`, i.e. tiktoken built by `genpt.fast_bpe`, books cut into pieces so
  that all threads stay busy;
- `tiktoken`: the same tiktoken Encoding's own `encode_ordinary_batch`, one task per book.

Each gets `--threads` threads (RAYON_NUM_THREADS, which genpt reads too). Runs alternate between the
three, so a busy spell on a shared machine hits all alike; the wall time of each run gives MB/s (UTF-8
bytes), and the median of `--repeats` runs is reported with the min-max beside it. MB per CPU-second
(all threads) is shown too: where other work competes for the cores, it says what each encoder costs
when wall times cannot. Every run's ids are compared with those of `tokenizers`.

    python bench/encode.py                              # all books, trains the tokenizer (~30 s) first
    python bench/encode.py --mb 10 --repeats 5 --tokenizer runs/gutenberg-8k.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

from workers import describe_machine, machine

ROOT = Path(__file__).resolve().parents[1]
BOOKS = ROOT.parent / "shared" / "data" / "gutenberg"
MERGES = 8192


def read_books(mb: float | None) -> list[str]:
    """The books in name order, stopping once `mb` MB (UTF-8) are read; all of them without a limit."""
    texts, size = [], 0
    for path in sorted(BOOKS.glob("*.txt.gz")):
        texts.append(gzip.open(path, "rt", encoding="utf-8").read())
        size += len(texts[-1].encode("utf-8"))
        if mb is not None and size >= mb * 1e6:
            break
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, help="encode only the first books, about this many MB (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every encoder (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per encoder; the median is reported")
    parser.add_argument("--tokenizer", type=Path, help="a genpt tokenizer.json (default: train one on the books)")
    parser.add_argument("--save-tokenizer", type=Path, help="write the trained tokenizer here, for --tokenizer")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not BOOKS.is_dir():
        sys.exit(f"{BOOKS}: not found; the benchmark reads the shared Gutenberg books")
    # Before tokenizers starts its thread pool, which reads this once.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from genpt.data.corpus import train_tokenizer
    from genpt.tokenizer import Tokenizer

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    texts = read_books(args.mb)
    size = sum(len(t.encode("utf-8")) for t in texts)
    if args.tokenizer:
        tokenizer = Tokenizer.load(args.tokenizer)
    else:
        began = time.perf_counter()
        tokenizer = train_tokenizer(sorted(BOOKS.glob("*.txt.gz")), vocab_size=256 + 5 + MERGES)
        log(f"trained a {MERGES}-merge byte-level BPE on {BOOKS} in {time.perf_counter() - began:.1f} s")
        if args.save_tokenizer:
            tokenizer.save(args.save_tokenizer)
    began = time.perf_counter()
    fast = tokenizer._tiktoken()
    if fast is None:
        sys.exit(f"{tokenizer}: genpt.fast_bpe found this vocabulary inexact, so genpt encodes with tokenizers")
    build_ms = (time.perf_counter() - began) * 1e3
    hf = tokenizer.hf
    log(f"{len(texts)} books, {size / 1e6:.1f} MB, {tokenizer}, {args.threads} threads, "
        f"tiktoken encoder built in {build_ms:.0f} ms; load average {os.getloadavg()[0]:.2f}")

    encoders = {
        "tokenizers": lambda: [e.ids for e in hf.encode_batch_fast(texts, add_special_tokens=False)],
        "genpt": lambda: tokenizer.encode_batch(texts),
        "tiktoken": lambda: fast.encode_ordinary_batch(texts, num_threads=args.threads),
    }
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in encoders}
    reference = None
    identical = {name: True for name in encoders}
    for _ in range(args.repeats):
        for name, encode in encoders.items():
            began, cpu = time.perf_counter(), time.process_time()
            ids = encode()
            seconds[name].append(time.perf_counter() - began)
            cpu_seconds[name].append(time.process_time() - cpu)
            reference = ids if reference is None else reference
            identical[name] = identical[name] and ids == reference
            del ids
    mb_s = {name: sorted(size / 1e6 / s for s in runs) for name, runs in seconds.items()}
    result = {
        "books": len(texts), "mb": size / 1e6, "threads": args.threads, "repeats": args.repeats,
        "vocab_size": tokenizer.vocab_size, "load_average": os.getloadavg(),
        "mb_per_s": {name: statistics.median(v) for name, v in mb_s.items()},
        "mb_per_cpu_s": {name: size / 1e6 / statistics.median(v) for name, v in cpu_seconds.items()},
        "identical_ids": identical, "machine": machine(args.threads),
    }
    result["genpt_over_tokenizers"] = result["mb_per_s"]["genpt"] / result["mb_per_s"]["tokenizers"]
    result["tiktoken_over_tokenizers"] = result["mb_per_s"]["tiktoken"] / result["mb_per_s"]["tokenizers"]
    if args.json:
        print(json.dumps(result))
    else:
        log(f"{'encoder':<12}{'MB/s':>8}  {'min-max':<13}{'MB/CPU-s':>9}  ids")
        for name, v in mb_s.items():
            same = "reference" if name == "tokenizers" else "identical" if identical[name] else "DIFFERENT"
            span = f"{v[0]:.2f}-{v[-1]:.2f}"
            log(f"{name:<12}{statistics.median(v):8.2f}  {span:<13}{result['mb_per_cpu_s'][name]:9.2f}  {same}")
        log(f"genpt / tokenizers: {result['genpt_over_tokenizers']:.2f}x   "
            f"tiktoken / tokenizers: {result['tiktoken_over_tokenizers']:.2f}x   "
            f"(load average now {os.getloadavg()[0]:.2f})")
        log(describe_machine(result["machine"]))
    if not all(identical.values()):
        sys.exit("ids differ from tokenizers'")


if __name__ == "__main__":
    main()
