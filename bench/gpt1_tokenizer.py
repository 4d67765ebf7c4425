"""GPT-1's release tokenizer: genpt's `GPT1Tokenizer` against transformers 4.46.3's slow `OpenAIGPTTokenizer`.

Both encode the same text line by line (about 1 MB by default: book paragraphs, GLUE sentences and odd
Unicode, built by `corpus()`, which tests/test_gpt1_tokenizer.py also uses); the reference runs in its own
virtualenv (transformers 4.46.3 + ftfy + spaCy, no torch) as a subprocess, timed inside it, so its start-up
is not counted. Each side's caches start empty in every run, the two sides' runs alternate, and the time is
the process's CPU time (one thread each), so that other work on a shared machine skews neither. Prints MB/s
of each, the ratio (medians of `--repeats` runs), and whether the ids were identical. Also times the
transformers 5.x pipeline (`gpt1-transformers`) against transformers 5.x's own `OpenAIGPTTokenizer`.

    python bench/gpt1_tokenizer.py                      # reference in .venv-ref/ (see docs/interop.md)
    python bench/gpt1_tokenizer.py --mb 0.2 --repeats 1 --reference-python /path/to/python
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VOCAB = SHARED / "gpt1_bpe"
BOOKS = ("2701-0.txt.gz", "1184-0.txt.gz", "11-0.txt.gz", "2600-0.txt.gz", "145-0.txt.gz", "28054-0.txt.gz",
         "120-0.txt.gz", "1952-0.txt.gz", "36-0.txt.gz", "3176-0.txt.gz")
# (file, text columns): the sentences of the GLUE tasks in ../shared/data/glue
GLUE = (("CoLA/train.tsv", (3,)), ("SST-2/train.tsv", (0,)), ("MRPC/train.tsv", (3, 4)),
        ("STS-B/train.tsv", (7, 8)), ("QNLI/dev.tsv", (1, 2)), ("WNLI/train.tsv", (1, 2)))
ODD = [
    "sÃ³", "voilÃ le travail", "Ã©tÃ©", "â€œquotedâ€\x9d", "&amp;", "&lt;b&gt;", "&eacute;", "&#x2019;", "&EACUTE;",
    "\x1b[36m", "\x00", "\x07", "\x0b", "\x0c", "\x7f", "\x85", "\u2028", "\u2029", "\r\n", "\r", "\t",
    "😀", "🎉", "👩‍👩‍👧", "🇫🇷", "\ud83d\ude00", "\ud800", "日本語", "中文", "テキスト", "한국어", "العربية", "עברית",
    "हिन्दी", "ΣΑΣ", "ΟΔΟΣ", "İstanbul", "ǅ", "ß", "ﬁ", "ﬂ", "ｆｕｌｌ", "\u00a0", "\u3000", "\u200b", "\u200d",
    "\ufeff", "e\u0301", "\u2014", "\u2013", "\u2015", "\u2026", "\u00b4", "\u2018", "\u2019", "\u201c", "\u201d",
    "<unk>", "<UNK>", "<|endoftext|>", "can't", "won't", "don't", "gonna", "y'all", "'em", "Mr.", "U.S.",
    "a.m.", "e.g.", "etc.", ":)", ":-)", "<3", "o.O", "^_^", "http://example.com/a?b=c", "me@mail.org", "#tag",
    "3.50", "$5", "10km", "1,000,000", "--", "...", "?!", "!!!", "(", ")", "[", "]", "{", "}", "/", "\\", "*",
    "_", "|", "~", "+", ";", '"', "'", "`", "''", "``", "\n", "\n\n", "  ", " ",
]


def _glue_sentences() -> list[str]:
    out = []
    for name, columns in GLUE:
        lines = (SHARED / "glue" / name).read_text(encoding="utf-8").split("\n")[1:]
        for line in lines:
            fields = line.split("\t")
            out.extend(fields[c] for c in columns if c < len(fields) and fields[c])
    return out


def _odd_lines(rng: random.Random, n: int, words: list[str]) -> list[str]:
    out = []
    for _ in range(n):
        parts = [rng.choice(ODD) if rng.random() < 0.5 else rng.choice(words) for _ in range(rng.randint(1, 12))]
        out.append("".join(p + rng.choice(("", " ", " ", "\n")) for p in parts))
    return out


def corpus(mb: float = 1.0, seed: int = 0) -> list[str]:
    """About `mb` MB of varied text, one string a line or paragraph: 70% books, 25% GLUE, 5% odd Unicode.

    Deterministic for a given (mb, seed).
    """
    rng = random.Random(seed)
    budget = int(mb * 1_000_000)
    out: list[str] = []
    words: set[str] = set()
    for name in BOOKS:  # a run of paragraphs from a random place in each book, headers and licences included
        paragraphs = [p for p in gzip.open(SHARED / "gutenberg" / name, "rt", encoding="utf-8").read().split("\n\n")
                      if p.strip()]
        words.update(w for p in paragraphs[:300] for w in p.split())
        out.extend(_take(paragraphs, rng.randrange(len(paragraphs)), 0.70 * budget / len(BOOKS)))
    glue = _glue_sentences()
    rng.shuffle(glue)  # sentences of every task
    out.extend(_take(glue, 0, 0.25 * budget))
    words_list = sorted(words)
    size = sum(len(x.encode("utf-8", "surrogatepass")) for x in out)
    while size < budget:
        extra = _odd_lines(rng, 100, words_list)
        out.extend(extra)
        size += sum(len(x.encode("utf-8", "surrogatepass")) for x in extra)
    rng.shuffle(out)
    return out


def _take(source: list[str], start: int, size: float) -> list[str]:
    out: list[str] = []
    for i in range(len(source)):
        out.append(source[(start + i) % len(source)])
        size -= len(out[-1].encode("utf-8"))
        if size <= 0:
            break
    return out


def megabytes(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6


# Runs in the reference virtualenv: argv = vocabulary folder, texts.json, ids.json, repeats.
REFERENCE = r"""
import json, sys, time
from transformers import OpenAIGPTTokenizer
folder, texts, out, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import ftfy, spacy  # without them the tokenizer silently falls back to BERT's; fail loudly instead
texts = json.load(open(texts))
seconds = []
for _ in range(repeats):
    tok = OpenAIGPTTokenizer(folder + "/encoder_bpe_40000.json", folder + "/vocab_40000.bpe")
    start = time.process_time()
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    seconds.append(time.process_time() - start)
json.dump({"ids": ids, "seconds": seconds}, open(out, "w"))
"""


def reference_python() -> Path | None:
    """The interpreter of the reference virtualenv: $GENPT_REF_PYTHON, else .venv-ref/ in the repository."""
    path = Path(os.environ.get("GENPT_REF_PYTHON") or ROOT / ".venv-ref" / "bin" / "python")
    return path if path.exists() else None


def run_reference(texts: list[str], python: Path, repeats: int = 1) -> tuple[list[list[int]], list[float]]:
    """Encode `texts` with transformers 4.46.3's slow OpenAIGPTTokenizer in `python`: (ids, seconds per run)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "texts.json", Path(tmp) / "ids.json"
        src.write_text(json.dumps(texts))  # ASCII escapes: lone surrogates survive the trip
        subprocess.run([str(python), "-c", REFERENCE, str(VOCAB), str(src), str(dst), str(repeats)], check=True,
                       env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        result = json.loads(dst.read_text())
    return result["ids"], result["seconds"]


def time_genpt(texts: list[str], pipeline: str, repeats: int, warm: list[float] | None = None):
    """genpt's ids and CPU seconds per run, each with fresh caches; `warm` gets the time of a second pass."""
    from genpt.gpt1_tokenizer import find_vocabulary, gpt1_tokenizer

    vocab = find_vocabulary(VOCAB)
    seconds, ids = [], []
    for _ in range(repeats):
        tokenizer = gpt1_tokenizer(vocab, pipeline)  # fresh caches every run
        start = time.process_time()
        ids = [tokenizer.encode(t) for t in texts]
        seconds.append(time.process_time() - start)
        if warm is not None:
            start = time.process_time()
            for t in texts:
                tokenizer.encode(t)
            warm.append(time.process_time() - start)
    return ids, seconds


def time_transformers5(texts: list[str], repeats: int) -> tuple[list[list[int]], list[float]] | None:
    try:
        from transformers import OpenAIGPTTokenizer
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for src, dst in (("encoder_bpe_40000.json", "vocab.json"), ("vocab_40000.bpe", "merges.txt")):
            (Path(tmp) / dst).write_bytes((VOCAB / src).read_bytes())
        seconds, ids = [], []
        for _ in range(repeats):
            tokenizer = OpenAIGPTTokenizer.from_pretrained(tmp)
            start = time.process_time()
            ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
            seconds.append(time.process_time() - start)
    return ids, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=1.0, help="megabytes of text (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tokenizer; the median is reported")
    parser.add_argument("--reference-python", type=Path, help="python of the transformers 4.46.3 virtualenv")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    from workers import describe_machine, machine  # here: tests import this file without bench/ on the path

    texts = corpus(args.mb)
    size = megabytes(texts)
    rows = []
    python = args.reference_python or reference_python()
    if python is None:
        print("no reference virtualenv (.venv-ref/ or --reference-python): timing genpt only", file=sys.stderr)
    seconds, warm, ref_seconds, ours, ref = [], [], [], None, None
    for _ in range(args.repeats):  # alternate the two, so that a busy spell hits both alike
        ours, s = time_genpt(texts, "release", 1, warm)
        seconds += s
        if python is not None:
            ref, s = run_reference(texts, python, 1)
            ref_seconds += s
    row = {"pipeline": "release", "genpt_mb_s": size / statistics.median(seconds),
           "genpt_warm_mb_s": size / statistics.median(warm)}
    if ref is not None:
        row.update(reference="transformers 4.46.3 OpenAIGPTTokenizer (slow, ftfy + spaCy)",
                   reference_mb_s=size / statistics.median(ref_seconds), identical=ours == ref,
                   lines_differing=sum(a != b for a, b in zip(ours, ref, strict=True)))
        row["ratio"] = row["genpt_mb_s"] / row["reference_mb_s"]
    rows.append(row)
    fast = [t for t in texts if not re.search("[\ud800-\udfff]", t)]  # Rust strings cannot hold surrogates
    ours, seconds = time_genpt(fast, "transformers", args.repeats)
    row = {"pipeline": "transformers", "genpt_mb_s": megabytes(fast) / statistics.median(seconds)}
    timed = time_transformers5(fast, args.repeats)
    if timed is not None:
        ref, ref_seconds = timed
        row.update(reference="transformers 5.x OpenAIGPTTokenizer", identical=ours == ref,
                   reference_mb_s=megabytes(fast) / statistics.median(ref_seconds),
                   lines_differing=sum(a != b for a, b in zip(ours, ref, strict=True)))
        row["ratio"] = row["genpt_mb_s"] / row["reference_mb_s"]
    rows.append(row)
    if args.json:
        print(json.dumps({"mb": size, "lines": len(texts), "repeats": args.repeats, "results": rows,
                          "machine": machine(1)}))
        return
    print(describe_machine(machine(1)))
    print(f"{size:.2f} MB in {len(texts)} lines, median of {args.repeats} runs, CPU time of one thread")
    print(f"{'pipeline':<14}{'genpt MB/s':>12}{'ref MB/s':>10}{'ratio':>8}  identical  {'warm MB/s':>10}  reference")
    for r in rows:
        ref_speed = f"{r['reference_mb_s']:10.3f}" if "reference_mb_s" in r else f"{'-':>10}"
        ratio = f"{r['ratio']:7.1f}x" if "ratio" in r else f"{'-':>8}"
        same = {True: "yes", False: f"NO ({r.get('lines_differing')} lines)", None: "-"}[r.get("identical")]
        warm_speed = f"{r['genpt_warm_mb_s']:10.3f}" if "genpt_warm_mb_s" in r else f"{'-':>10}"
        print(f"{r['pipeline']:<14}{r['genpt_mb_s']:12.3f}{ref_speed}{ratio}  {same:<9}  {warm_speed}  "
              f"{r.get('reference', '')}")
    print("(genpt and reference: fresh caches each run; warm: genpt's second pass over the same text)")


if __name__ == "__main__":
    main()
