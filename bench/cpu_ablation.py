"""What each CPU optimisation of genpt's training step gains: the same step with them switched on one by one.

All variants live in one process and are timed in turns (round-robin), so drift in the machine hits
each alike; reported are the medians. The switches turn genpt.kernels' fast paths off, leaving their
plain twins: `F.linear` (MKL) for oneDNN, `F.dropout` for the 16-bit masks, SDPA's math path for the
attention with dropout, PyTorch's tanh GELU for the compiled one, the full-logits cross-entropy for the
chunked loss, and the for-each AdamW for the fused one. A fast path switched on runs wherever it
applies (GENPT_KERNELS=first: no measuring, so that each row shows what its path gains or costs on
this CPU; `bench/step_turns.py` shows the measured choice). The lm_loss row is the chunked loss with
oneDNN's products. Gains of a few percent drown here: `bench/path_turns.py` isolates one path.

    python bench/cpu_ablation.py                 # small shape, float32
    python bench/cpu_ablation.py --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from workers import describe_machine, machine

from genpt import kernels
from genpt.config import ModelConfig
from genpt.kernels import select
from genpt.model import GPT
from genpt.train.optimizers import param_groups

STEPS = ["fused AdamW", "linear", "dropout", "attention", "gelu", "lm_loss"]  # switched on in this order
NAMES = {"fused AdamW": "+ fused AdamW", "linear": "+ oneDNN float32 linear", "dropout": "+ 16-bit dropout masks",
         "attention": "+ attention with dropout (baddbmm)", "gelu": "+ compiled tanh GELU",
         "lm_loss": "+ chunked LM loss"}


def switched_off(on: set[str]):
    """A context in which the kernels' fast paths not in `on` give way to their plain twins."""
    off = [name for name in STEPS if name in kernels.PATHS and name not in on]
    return kernels.disable(*off, *(["lm_loss.chunked_mm"] if "lm_loss" in on else []))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    select.use(select.Selector("first"))
    config = ModelConfig(vocab_size=8192, n_ctx=256, n_embd=384, n_layer=6, n_head=6)  # the "small" shape
    ids = torch.randint(0, config.vocab_size, (8, config.n_ctx), generator=torch.Generator().manual_seed(0))
    variants = {"plain PyTorch": set()}
    for i, name in enumerate(STEPS):
        variants[NAMES[name]] = set(STEPS[: i + 1])
    steps = {}
    for name, on in variants.items():
        torch.manual_seed(0)
        model = GPT(config).train()
        opt = torch.optim.AdamW(param_groups(model, 0.01), lr=2.5e-4, fused="fused AdamW" in on)

        def step(model=model, opt=opt, on=on):
            opt.zero_grad(set_to_none=True)
            with switched_off(on):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
                    loss = model(ids, labels=ids, return_logits=False).loss
                loss.backward()
            opt.step()

        for _ in range(2):
            step()
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    tokens = ids.numel()
    base = tokens / statistics.median(times["plain PyTorch"])
    print(f"small shape (6 x 384, context 256, vocab 8192), batch 8, {args.dtype}, {torch.get_num_threads()} threads; "
          f"median of {args.rounds} round-robin steps")
    print(describe_machine(machine()))
    print(f"{'variant':<40}{'tokens/s':>10}{'vs plain':>10}")
    for name, ts in times.items():
        tps = tokens / statistics.median(ts)
        print(f"{name:<40}{tps:>10,.0f}{tps / base:>9.2f}x")


if __name__ == "__main__":
    main()
