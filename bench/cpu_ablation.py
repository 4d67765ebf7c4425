"""What each CPU optimisation of genpt's training step gains: the same step with them switched on one by one.

All variants live in one process and are timed in turns (round-robin), so drift in the machine hits
each alike; reported are the medians. The switches replace genpt's fast paths by PyTorch's plain ones:
`F.linear` (MKL) for genpt.onednn, `F.dropout` for genpt.dropout, SDPA's math path for the attention
with dropout, the full-logits cross-entropy for genpt.lm_loss, and the for-each AdamW for the fused one.

    python bench/cpu_ablation.py                 # small shape, float32
    python bench/cpu_ablation.py --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import genpt.dropout
import genpt.lm_loss
import genpt.model
import genpt.onednn
from genpt.config import ModelConfig
from genpt.model import GPT, param_groups

FAST = {
    "linear": genpt.onednn.ENABLED,
    "dropout": genpt.dropout.dropout,
    "attention": genpt.model.causal_attention_with_dropout,
    "lm_loss": genpt.lm_loss.fused_applies,
}
PLAIN = {
    "linear": False,
    "dropout": lambda x, p, training: F.dropout(x, p, training),
    "attention": lambda q, k, v, p: F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True),
    "lm_loss": lambda h, vocab: False,
}
STEPS = ["fused AdamW", "linear", "dropout", "attention", "lm_loss"]  # switched on in this order
NAMES = {"fused AdamW": "+ fused AdamW", "linear": "+ oneDNN float32 linear", "dropout": "+ 16-bit dropout masks",
         "attention": "+ attention with dropout (baddbmm)", "lm_loss": "+ chunked LM loss"}


def switch(on: set[str]) -> None:
    genpt.onednn.ENABLED = FAST["linear"] if "linear" in on else PLAIN["linear"]
    genpt.dropout.dropout = FAST["dropout"] if "dropout" in on else PLAIN["dropout"]
    genpt.model.causal_attention_with_dropout = FAST["attention"] if "attention" in on else PLAIN["attention"]
    genpt.lm_loss.fused_applies = FAST["lm_loss"] if "lm_loss" in on else PLAIN["lm_loss"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
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
            switch(on)
            opt.zero_grad(set_to_none=True)
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
    print(f"{'variant':<40}{'tokens/s':>10}{'vs plain':>10}")
    for name, ts in times.items():
        tps = tokens / statistics.median(ts)
        print(f"{name:<40}{tps:>10,.0f}{tps / base:>9.2f}x")


if __name__ == "__main__":
    main()
