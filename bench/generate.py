"""Greedy generation tokens/s of genpt (KV cache) against Hugging Face's OpenAIGPT (no cache) and GPT-2 (cache).

All three have the same shape and random weights from seed 0; OpenAIGPTLMHeadModel gets genpt's own weights, so
its greedy ids must equal genpt's. transformers runs `model.generate(..., do_sample=False)`: OpenAIGPT has no
cache and recomputes the whole sequence at every step, GPT-2 (pre-LN, the same sizes) uses its cache. Each
implementation runs in its own subprocess, one after the other; a run times whole `generate` calls (the
prompt's pass included) after one short warm-up call, and tokens/s is new tokens x batch / median call time.

Checks, printed beside the figures: genpt's ids equal the genpt model run without the cache (the whole
sequence through the model and an argmax at every step), equal HF OpenAIGPT's at batch 1 and batch N, and
every row of a ragged batch (prompts of different lengths, left-padded) equals that prompt generated alone.

    python bench/generate.py --new-tokens 20 --runs 1            # smoke test, about a minute
    python bench/generate.py                                     # batch 1 and 8, 16 + 200 tokens, 1 thread
    python bench/generate.py --batches 1 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version

from workers import cpu_name, describe_machine, machine, run_worker

SHAPE = dict(n_layer=6, n_embd=384, n_head=6, n_ctx=256, vocab_size=8192)
IMPLEMENTATIONS = ("genpt", "genpt-ragged", "hf-openai-gpt", "hf-gpt2")
NAMES = {"genpt": "genpt (cache)", "genpt-ragged": "genpt ragged", "hf-openai-gpt": "HF OpenAIGPT",
         "hf-gpt2": "HF GPT-2 (cache)"}
CONV = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompt-len", type=int, default=16, help="prompt tokens (the longest, for genpt-ragged)")
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes to measure")
    p.add_argument("--runs", type=int, default=3, help="timed generate calls per subprocess")
    p.add_argument("--repeats", type=int, default=1, help="subprocesses per implementation and batch")
    p.add_argument("--impls", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS),
                   help="genpt-ragged: prompts of random lengths 1..prompt-len, left-padded; skipped at batch 1")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: steadier on a shared machine)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.prompt_len, args.new_tokens, args.runs, args.repeats, args.threads, *args.batches) < 1:
        p.error("every count must be positive")
    if args.prompt_len + args.new_tokens > SHAPE["n_ctx"]:
        p.error(f"--prompt-len + --new-tokens must fit the context of {SHAPE['n_ctx']}: OpenAIGPT cannot slide")
    return args


def genpt_model():
    import torch

    from genpt import GPT, ModelConfig

    torch.manual_seed(0)
    return GPT(ModelConfig(**SHAPE)).eval()


def build(impl: str):
    """The model to time; HF OpenAIGPT gets genpt's seed-0 weights, GPT-2 its own seed-0 init."""
    if impl.startswith("genpt"):
        return genpt_model()
    import torch
    import transformers

    sizes = dict(vocab_size=SHAPE["vocab_size"], n_positions=SHAPE["n_ctx"], n_embd=SHAPE["n_embd"],
                 n_layer=SHAPE["n_layer"], n_head=SHAPE["n_head"])
    if impl == "hf-gpt2":
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes, bos_token_id=None,
                                                                    eos_token_id=None)).eval()
    hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**sizes, afn="gelu")).eval()
    # Same names less "transformer."; Conv1D stores (in, out) where nn.Linear stores (out, in).
    state = {k: v.t() if k.endswith(CONV) else v for k, v in genpt_model().state_dict().items()
             if k != "lm_head.weight"}
    missing, unexpected = hf.transformer.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("position_ids") for k in missing):
        sys.exit(f"weights did not map onto OpenAIGPT: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf


def prompts(batch: int, length: int, ragged: bool):
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, SHAPE["vocab_size"], (batch, length), generator=g)
    if not ragged:
        return ids
    lengths = torch.randint(1, length + 1, (batch,), generator=g).tolist()
    lengths[0] = length  # the longest sets the padded width
    return [row[:n].tolist() for row, n in zip(ids, lengths, strict=True)]


def greedy_without_cache(model, ids, n: int):
    """The reference path: the whole sequence through genpt's model and an argmax, at every step."""
    import torch

    with torch.inference_mode():
        for _ in range(n):
            token = model(ids).logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, token], dim=1)
    return ids


def worker(args: argparse.Namespace) -> dict:
    """Time `--runs` generate calls of one implementation in this process; return the times and the ids."""
    import torch

    from genpt.generate import generate

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build(args.worker).to(device)
    impl, n = args.worker, args.new_tokens
    batch = prompts(args.batch, args.prompt_len, ragged=impl == "genpt-ragged")
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device)
    if impl.startswith("genpt"):
        def call(m):
            return generate(model, batch, m, temperature=0)
    else:
        def call(m):
            with torch.inference_mode():
                return model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=m,
                                      do_sample=False, pad_token_id=0, use_cache=impl == "hf-gpt2")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    call(min(n, 8))  # warm-up: thread pools, kernels, allocator
    times = []
    for _ in range(args.runs):
        sync()
        start = time.perf_counter()
        out = call(n)
        sync()
        times.append(time.perf_counter() - start)
    ids = out if isinstance(out, list) else out.tolist()
    result = {"call_s": times, "ids": ids}
    if args.check and impl == "genpt":
        reference = greedy_without_cache(model, batch, n)
        result["equals_no_cache"] = reference.tolist() == ids
    if args.check and impl == "genpt-ragged":
        alone = [generate(model, [p], n, temperature=0)[0] for p in batch]
        result["equals_alone"] = alone == ids
    return result


def run_once(impl: str, batch: int, argv: list[str], check: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", impl, "--batch", str(batch)]
    return run_worker(cmd + (["--check"] if check else []), impl)


def first_difference(a: list[list[int]], b: list[list[int]]) -> str:
    for row, (x, y) in enumerate(zip(a, b, strict=True)):
        for col, (i, j) in enumerate(zip(x, y, strict=True)):
            if i != j:
                return f"row {row}, position {col}: {i} against {j}"
    return "different lengths"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    import torch

    env = {"torch": torch.__version__, "transformers": version("transformers"), "cpu": cpu_name(),
           "device": args.device, "python": platform.python_version(), "cores": os.cpu_count(),
           "threads": args.threads, "load_before": os.getloadavg()[0], "machine": machine(args.threads)}
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    results: dict[int, dict[str, dict]] = {}
    checks: dict[str, bool | str] = {}
    for batch in args.batches:
        impls = [i for i in args.impls if not (i == "genpt-ragged" and batch == 1)]
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for r in range(args.repeats):
            for impl in impls:  # alternate, so slow drift in the machine hits all alike
                result = run_once(impl, batch, argv, check=r == 0)
                result["tokens_per_s"] = batch * args.new_tokens / statistics.median(result["call_s"])
                runs[impl].append(result)
                print(f"  batch {batch}, {impl} run {r + 1}/{args.repeats}: {result['tokens_per_s']:,.1f} tokens/s",
                      file=sys.stderr)
        results[batch] = {}
        for impl, rs in runs.items():
            per_run = [x["tokens_per_s"] for x in rs]
            results[batch][impl] = {"tokens_per_s": statistics.median(per_run), "tokens_per_s_runs": per_run}
        first = {impl: rs[0] for impl, rs in runs.items()}
        if "genpt" in first:
            checks[f"batch {batch}: genpt cache == genpt without cache"] = first["genpt"]["equals_no_cache"]
            if "hf-openai-gpt" in first:
                a, b = first["genpt"]["ids"], first["hf-openai-gpt"]["ids"]
                checks[f"batch {batch}: genpt == HF OpenAIGPT greedy"] = a == b or first_difference(a, b)
        if "genpt-ragged" in first:
            checks[f"batch {batch}: genpt ragged rows == each prompt alone"] = first["genpt-ragged"]["equals_alone"]
    env["load_after"] = os.getloadavg()[0]
    settings = {**SHAPE, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "runs": args.runs,
                "repeats": args.repeats, "hf_call": "model.generate(..., do_sample=False)"}
    if args.json:
        print(json.dumps({"env": env, "settings": settings, "results": results, "checks": checks}, indent=2))
    else:
        print_report(env, settings, results, checks)


def print_report(env: dict, settings: dict, results: dict, checks: dict) -> None:
    e, s = env, settings
    print(f"torch {e['torch']}, transformers {e['transformers']}, Python {e['python']}")
    print(f"CPU: {e['cpu']}; device: {e['device']}" + (f" ({e['gpu']})" if "gpu" in e else "")
          + f"; {e['threads']} thread(s) of {e['cores']} cores, 1-min load average {e['load_before']:.1f} before, "
          f"{e['load_after']:.1f} after")
    print(describe_machine(e["machine"]))
    print(f"{s['n_layer']} layers, {s['n_embd']} wide, {s['n_head']} heads, context {s['n_ctx']}, vocab "
          f"{s['vocab_size']}; greedy, {s['prompt_len']}-token prompts + {s['new_tokens']} new tokens; median of "
          f"{s['runs']} calls per subprocess, median over {s['repeats']} subprocess(es)")
    for batch, rows in results.items():
        print(f"\nbatch {batch}")
        print(f"{'implementation':<20}{'tokens/s':>10}{'runs (min-max)':>20}{'vs OpenAIGPT':>14}{'vs GPT-2':>10}")
        for impl, r in rows.items():
            spread = f"{min(r['tokens_per_s_runs']):,.1f}-{max(r['tokens_per_s_runs']):,.1f}"
            ratios = "".join(f"{r['tokens_per_s'] / rows[ref]['tokens_per_s']:>{w - 1}.2f}x" if ref in rows
                             else f"{'-':>{w}}" for ref, w in (("hf-openai-gpt", 14), ("hf-gpt2", 10)))
            print(f"{NAMES[impl]:<20}{r['tokens_per_s']:>10,.1f}{spread:>20}{ratios}")
    print()
    for name, ok in checks.items():
        print(f"{'ok' if ok is True else 'MISMATCH'}  {name}" + ("" if ok is True else f" ({ok})"))


if __name__ == "__main__":
    main()
