"""Named starting settings found by measurement: `genpt pretrain --recipe NAME` and the demo's model.

Each recipe is a table of settings laid over GPT-1's defaults, under a `--config` file and `--set`.
"""

from __future__ import annotations

import copy
from typing import Any

from genpt.errors import GenptError

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # Two CPU cores, minutes to an hour: bench/cpu_recipe.py's sweep, bench/results/cpu-recipe-2026-12-01/,
    # docs/performance.md "The CPU recipe". Post-LN blocks with their matrices on Muon train at rates
    # AdamW collapses at; a budget of a few passes over the data barely needs dropout; linear decay to
    # zero over the run; bf16 autocast where a measured step says it is faster.
    "cpu": {
        "model": {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_ctx": 128,
                  "embd_pdrop": 0.0, "attn_pdrop": 0.0, "resid_pdrop": 0.0},
        "train": {"batch_size": 32, "optimizer": "muon", "lr": 3e-3, "lr_schedule": "linear",
                  "warmup_fraction": 0.1, "dtype": "auto"},
    },
}


def recipe(name: str) -> dict[str, dict[str, Any]]:
    """A copy of recipe `name`'s settings, as nested tables like a TOML file's."""
    if name not in RECIPES:
        raise GenptError(f"--recipe {name!r}: unknown; known: {', '.join(sorted(RECIPES))}")
    return copy.deepcopy(RECIPES[name])
