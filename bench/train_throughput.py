"""Training throughput of genpt's GPT against Hugging Face's OpenAIGPTLMHeadModel, litgpt's and nanoGPT's GPT.

One training step is forward (LM loss on `labels=ids`), backward and a fused AdamW step (the same
optimizer for every implementation), dropout on where the implementation has it (litgpt has none).
Each implementation runs in its own subprocess, one after the other (never concurrently), so
none inherits another's allocator or thread-pool state; genpt's keeps freed host memory, as genpt's
training does on the CPU (genpt.train.host_memory). A run times `--warmup` unmeasured steps,
then `--steps` measured ones, and keeps the median step time; with `--repeats N` each
implementation runs N times (alternating) and the median of the run medians is reported.
Achieved GFLOP/s is `count_flops_per_token(config)` x tokens/s for all, so it compares work done
per second on the same nominal model, not each library's own FLOP count; MFU divides it by the
fastest matrix product measured on the same device, at the same precision, in the same run.

litgpt pins an older huggingface_hub than transformers 5 needs, so it lives in its own virtualenv
(`scripts/bench-venv.sh` makes `.venv-litgpt`); its worker runs there when it exists. nanoGPT is not a
package: `--nanogpt PATH` names a checkout (a folder holding its model.py), imported from there.

    python bench/train_throughput.py --shape tiny                       # smoke test, seconds
    python bench/train_throughput.py --shape small --steps 10 --warmup 3 --repeats 3
    python bench/train_throughput.py --shape gpt1 --batch 32 --dtype bfloat16 --device cuda --compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from types import SimpleNamespace

from workers import cpu_name, describe_machine, machine, run_worker, src_path_env

# name: (n_layer, n_embd, n_head, n_ctx, vocab_size, batch)
SHAPES = {
    "tiny": (2, 64, 2, 64, 512, 8),
    "small": (6, 384, 6, 256, 8192, 8),
    "cpu": (4, 256, 4, 128, 8192, 32),  # the cpu recipe's (genpt.recipes): the demo's and the study's model
    "gpt1": (12, 768, 12, 512, 40478, 1),
}
IMPLEMENTATIONS = ("genpt", "hf", "litgpt", "nanogpt")
NAMES = {"genpt": "genpt GPT", "hf": "HF OpenAIGPT", "litgpt": "litgpt GPT", "nanogpt": "nanoGPT GPT"}
LITGPT_PYTHON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv-litgpt", "bin", "python")
ADAMW = dict(lr=2.5e-4, betas=(0.9, 0.999), eps=1e-8)  # GPT-1's pre-training optimiser
WEIGHT_DECAY = 0.01  # on matrices only, for both (genpt.train.optimizers.param_groups)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from genpt.config import ATTENTION_KERNELS, TRAIN_KERNELS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=SHAPES, default="small")
    p.add_argument("--batch", type=int, default=0, help="sequences per step (default: the shape's)")
    p.add_argument("--vocab", type=int, default=0, help="vocabulary size (default: the shape's; e.g. padded)")
    p.add_argument("--pad-vocab", type=int, default=1, metavar="M",
                   help="genpt's model.pad_vocab_multiple: rows rounded up to a multiple of M, never predicted")
    p.add_argument("--dropout", type=float, default=0.1, help="embedding, attention and residual dropout "
                   "(GPT-1: 0.1; litgpt has none)")
    p.add_argument("--steps", type=int, default=10, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured steps before timing")
    p.add_argument("--repeats", type=int, default=1, help="subprocess runs per implementation")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16 runs the step under torch.autocast; weights stay float32")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="torch.set_num_threads (default: all cores available to this process)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile every implementation's model")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile's mode: default | reduce-overhead (CUDA graphs) | max-autotune | ...")
    p.add_argument("--attention-kernel", default="torch", choices=ATTENTION_KERNELS,
                   help="SDPA's first choice for every implementation (genpt's train.attention_kernel)")
    p.add_argument("--kernels", default="torch", choices=TRAIN_KERNELS,
                   help="genpt's train.kernels (liger: liger-kernel's fused loss and LayerNorm, CUDA)")
    p.add_argument("--float8", action="store_true", help="genpt's train.float8 (torchao, CUDA sm89+)")
    p.add_argument("--nanogpt", metavar="PATH", default="", help="a nanoGPT checkout (the folder of its model.py)")
    p.add_argument("--impls", default=",".join(IMPLEMENTATIONS),
                   help="comma-separated implementations to run (default: all; litgpt and nanogpt are "
                        "skipped if missing)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--save", metavar="PATH", help="also write the JSON object to PATH")
    p.add_argument("--worker", choices=(*IMPLEMENTATIONS, "ceiling"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1 or args.threads < 1 or args.batch < 0:
        p.error("--steps, --repeats and --threads must be positive; --warmup and --batch not negative")
    return args


def model_config(args: argparse.Namespace):
    from genpt.config import ModelConfig

    n_layer, n_embd, n_head, n_ctx, vocab_size, _ = SHAPES[args.shape]
    vocab_size = args.vocab or vocab_size
    return ModelConfig(vocab_size=vocab_size, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                       embd_pdrop=args.dropout, attn_pdrop=args.dropout, resid_pdrop=args.dropout,
                       pad_vocab_multiple=args.pad_vocab)


def build_model(impl: str, config, nanogpt: str = ""):
    if impl == "genpt":
        from genpt.model import GPT

        return GPT(config)
    if impl == "litgpt":
        return LitGPTWithLoss(config)
    if impl == "nanogpt":
        return nanogpt_model(config, nanogpt)
    import transformers

    hf_config = transformers.OpenAIGPTConfig(
        vocab_size=config.vocab_size, n_positions=config.n_ctx, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, afn="gelu",  # HF's "gelu" here is the tanh form
        embd_pdrop=config.embd_pdrop, attn_pdrop=config.attn_pdrop, resid_pdrop=config.resid_pdrop,
        layer_norm_epsilon=config.layer_norm_epsilon, initializer_range=config.initializer_range,
    )
    return transformers.OpenAIGPTLMHeadModel(hf_config)


class LitGPTWithLoss:
    """litgpt's GPT at genpt's shape (post-norm is not on offer: litgpt is pre-LN with a final norm;
    learned positions neither: rotary is switched off), called like the others: `model(ids, labels=)`."""

    def __new__(cls, config):
        import torch
        from litgpt.config import Config
        from litgpt.model import GPT
        from litgpt.utils import chunked_cross_entropy

        lit = Config(name="genpt-shape", block_size=config.n_ctx, vocab_size=config.vocab_size,
                     padded_vocab_size=config.vocab_size, n_layer=config.n_layer, n_head=config.n_head,
                     n_embd=config.n_embd, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
                     intermediate_size=config.inner_dim, gelu_approximate="tanh", parallel_residual=False,
                     rotary_percentage=0.0)

        class Wrapped(GPT):
            def forward(self, ids, labels=None):
                logits = super().forward(ids)
                loss = chunked_cross_entropy(logits[:, :-1], labels[:, 1:])
                return SimpleNamespace(loss=loss, logits=logits)

        torch.manual_seed(0)
        return Wrapped(lit)


def nanogpt_model(config, path: str):
    """nanoGPT's GPT from the checkout at `path`, at genpt's shape, called like the others: pre-LN with a
    final norm (nanoGPT has no post-LN), learned positions, tied head, biases, one dropout rate, and
    genpt's padded vocabulary (nanoGPT pads its own, 50,257 to 50,304). Its loss is its own: the logits
    of every position, then the cross-entropy (the last position's target ignored)."""
    import importlib.util

    import torch.nn.functional as F

    spec = importlib.util.spec_from_file_location("nanogpt_model", os.path.join(path, "model.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # torch.compile re-imports a traced function's module by name
    spec.loader.exec_module(module)

    class Wrapped(module.GPT):
        def forward(self, ids, labels=None):
            logits, loss = super().forward(ids, F.pad(labels[:, 1:], (0, 1), value=-1))
            # Not a class made per call (as until 2026-12-02): a class is freed only by the cyclic garbage
            # collector, and with it these logits, 268 MB a step at batch 32, and their autograd graph.
            return SimpleNamespace(loss=loss, logits=logits)

    return Wrapped(module.GPTConfig(block_size=config.n_ctx, vocab_size=config.padded_vocab_size,
                                    n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                                    dropout=config.resid_pdrop, bias=True))


def ceiling(args: argparse.Namespace) -> dict:
    """The fastest matrix product on this device at the run's precision, in GFLOP/s (median of repeats).

    On the CPU in float32 both of PyTorch's paths are tried: the default (MKL) and oneDNN.
    """
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    paths = {"torch.mm": lambda: torch.mm(a, b)}
    if device.type == "cpu":
        paths["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    found = {}
    for name, fn in paths.items():
        times = []
        for i in range(13):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if i >= 3:
                times.append(time.perf_counter() - start)
        found[name] = 2 * n**3 / statistics.median(times) / 1e9
    return {"gflops_per_s": max(found.values()), "paths": found, "n": n}


def worker(args: argparse.Namespace) -> dict:
    """Time training steps of one implementation in this process; return its step times."""
    import torch

    from genpt.kernels import preferred_attention_kernels
    from genpt.kernels.backends import apply_backends
    from genpt.train.optimizers import param_groups

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = model_config(args)
    if args.worker == "genpt":
        from genpt.train import host_memory

        host_memory.apply("keep", device.type)  # as genpt's training loop does (train.host_memory=keep)
    model = build_model(args.worker, config, args.nanogpt).to(device).train()
    applied = apply_backends(model, args.kernels, args.float8, device) if args.worker == "genpt" else []
    optimizer = torch.optim.AdamW(param_groups(model, WEIGHT_DECAY), **ADAMW, fused=True)
    forward = torch.compile(model, mode=args.compile_mode) if args.compile else model
    loss_only = {"return_logits": False} if args.worker == "genpt" else {}  # genpt's training path
    ids = torch.randint(0, config.vocab_size, (args.batch, config.n_ctx), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    times, losses = [], []
    with preferred_attention_kernels(args.attention_kernel):  # around compilation too
        for step in range(args.warmup + args.steps):
            sync()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = forward(ids, labels=ids, **loss_only).loss
            loss.backward()
            optimizer.step()
            sync()  # CUDA kernels run asynchronously; stop the clock only when they are done
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
                losses.append(loss.item())  # after the clock: .item() would sync mid-step
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if args.worker == "genpt" and device.type == "cpu":  # what genpt.kernels.select chose, by path
        from collections import Counter

        from genpt.kernels.select import selector

        chosen = Counter(f"{key.partition('|')[0]}={c.chosen}" for key, c in selector().used.items())
        applied.append("kernels by measurement: " + ", ".join(f"{k} x{n}" for k, n in sorted(chosen.items())))
    return {"step_s": times, "losses": losses, "parameters": n_params, "backends": applied}


def python_for(impl: str, nanogpt: str = "") -> str | None:
    """The interpreter that can run `impl`, or None when none here can."""
    if impl == "nanogpt":
        return sys.executable if os.path.isfile(os.path.join(nanogpt, "model.py")) else None
    if impl != "litgpt":
        return sys.executable
    for python in (sys.executable, LITGPT_PYTHON):
        if os.path.exists(python) and subprocess.run([python, "-c", "import litgpt.model"],
                                                     capture_output=True).returncode == 0:
            return python
    return None


def run_once(impl: str, argv: list[str], python: str = sys.executable) -> dict:
    return run_worker([python, os.path.abspath(__file__), *argv, "--worker", impl], impl, env=src_path_env())


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.batch = args.batch or SHAPES[args.shape][5]
    if args.worker:
        print(json.dumps(ceiling(args) if args.worker == "ceiling" else worker(args)))
        return
    # Workers get the resolved values, so both run exactly the same configuration.
    argv += ["--device", args.device, "--batch", str(args.batch), "--threads", str(args.threads)]

    from genpt.train.flops import count_flops_per_token

    config = model_config(args)
    tokens_per_step = args.batch * config.n_ctx
    impls = [i for i in args.impls.split(",") if i]
    pythons = {impl: python_for(impl, args.nanogpt) for impl in impls}
    for impl in [i for i, p in pythons.items() if p is None]:
        how = "--nanogpt PATH names a checkout" if impl == "nanogpt" else "scripts/bench-venv.sh installs it"
        print(f"  {impl}: not installed here, skipped ({how})", file=sys.stderr)
        impls.remove(impl)
    env = {"torch": torch.__version__, "transformers": version("transformers"), "cpu": cpu_name(),
           "device": args.device, "python": platform.python_version(), "cores": os.cpu_count(),
           "load_before": os.getloadavg()[0],  # other work on the machine skews every number
           "machine": machine(args.threads)}
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if "litgpt" in impls:
        env["litgpt"] = subprocess.run([pythons["litgpt"], "-c", "from importlib.metadata import version; "
                                        "print(version('litgpt'))"], capture_output=True, text=True).stdout.strip()
    peak = run_once("ceiling", argv)
    runs: dict[str, list[dict]] = {impl: [] for impl in impls}
    for r in range(args.repeats):
        for impl in impls:  # alternate, so slow drift in the machine hits all alike
            result = run_once(impl, argv, pythons[impl])
            result["tokens_per_s"] = tokens_per_step / statistics.median(result["step_s"])
            runs[impl].append(result)
            print(f"  {impl} run {r + 1}/{args.repeats}: {result['tokens_per_s']:,.0f} tokens/s",
                  file=sys.stderr)

    env["load_after"] = os.getloadavg()[0]
    flops = count_flops_per_token(config)
    summary = {}
    for impl, results in runs.items():
        per_run = [x["tokens_per_s"] for x in results]
        tps = statistics.median(per_run)
        summary[impl] = {"tokens_per_s": tps, "tokens_per_s_runs": per_run, "gflops_per_s": tps * flops / 1e9,
                         "mfu": tps * flops / 1e9 / peak["gflops_per_s"],
                         "parameters": results[0]["parameters"], "last_loss": results[-1]["losses"][-1],
                         "backends": results[0].get("backends", [])}
    ratio = {f"genpt/{impl}": summary["genpt"]["tokens_per_s"] / summary[impl]["tokens_per_s"]
             for impl in summary if impl != "genpt" and "genpt" in summary}
    settings = {"shape": args.shape, "n_layer": config.n_layer, "n_embd": config.n_embd,
                "n_head": config.n_head, "n_ctx": config.n_ctx, "vocab_size": config.vocab_size,
                "batch": args.batch, "dtype": args.dtype, "threads": args.threads, "steps": args.steps,
                "warmup": args.warmup, "repeats": args.repeats, "flops_per_token": flops, "compile": args.compile,
                "compile_mode": args.compile_mode, "pad_vocab_multiple": args.pad_vocab, "dropout": args.dropout,
                "attention_kernel": args.attention_kernel, "kernels": args.kernels, "float8": args.float8}
    report = {"env": env, "settings": settings, "ceiling": peak, "results": summary, "ratios": ratio}
    if args.save:
        with open(args.save, "w") as f:
            json.dump(report, f, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(env, settings, peak, summary, ratio)


def print_report(env: dict, settings: dict, peak: dict, summary: dict, ratio: dict) -> None:
    e, s = env, settings
    print(f"torch {e['torch']}, transformers {e['transformers']}"
          + (f", litgpt {e['litgpt']}" if "litgpt" in e else "") + f", Python {e['python']}")
    print(f"CPU: {e['cpu']}; device: {e['device']}" + (f" ({e['gpu']})" if "gpu" in e else "")
          + f"; {e['cores']} cores, 1-min load average {e['load_before']:.1f} before, {e['load_after']:.1f} after")
    if "machine" in e:
        print(describe_machine(e["machine"]))
    print(f"shape {s['shape']}: {s['n_layer']} layers, {s['n_embd']} wide, {s['n_head']} heads, "
          f"context {s['n_ctx']}, vocab {s['vocab_size']}; batch {s['batch']}, {s['dtype']}, "
          f"{s['threads']} threads, dropout {s.get('dropout', 0.1):g}"
          + (f", genpt's rows padded to a multiple of {s['pad_vocab_multiple']}" if s.get("pad_vocab_multiple", 1) > 1
             else "")
          + (f", torch.compile ({s.get('compile_mode', 'default')})" if s["compile"] else ", eager")
          + f", attention kernel {s.get('attention_kernel', 'torch')}"
          + (f"; genpt with train.kernels={s['kernels']}" if s.get("kernels", "torch") != "torch" else "")
          + ("; genpt with train.float8" if s.get("float8") else ""))
    print(f"median of {s['steps']} steps after {s['warmup']} warm-up, median over {s['repeats']} run(s); "
          f"{s['flops_per_token'] / 1e6:.1f} MFLOP/token")
    paths = ", ".join(f"{k} {v:,.0f}" for k, v in peak["paths"].items())
    print(f"matmul ceiling ({peak['n']}^3, {s['dtype']}): {peak['gflops_per_s']:,.0f} GFLOP/s ({paths})\n")
    base = "hf" if "hf" in summary else next(iter(summary))
    print(f"{'implementation':<16}{'tokens/s':>12}{'runs (min-max)':>20}{'GFLOP/s':>10}{'MFU':>7}"
          f"{'vs ' + NAMES[base].split()[0]:>9}")
    for impl, r in summary.items():
        spread = f"{min(r['tokens_per_s_runs']):,.0f}-{max(r['tokens_per_s_runs']):,.0f}"
        rel = r["tokens_per_s"] / summary[base]["tokens_per_s"]
        print(f"{NAMES[impl]:<16}{r['tokens_per_s']:>12,.0f}{spread:>20}{r['gflops_per_s']:>10.1f}"
              f"{r['mfu']:>7.2f}{rel:>8.2f}x")
    for impl, r in summary.items():
        if r.get("backends"):
            print(f"{NAMES[impl]} ran with: {'; '.join(r['backends'])}")
    if ratio:
        print("\n" + "; ".join(f"{k} tokens/s ratio: {v:.2f}" for k, v in ratio.items()))


if __name__ == "__main__":
    main()
