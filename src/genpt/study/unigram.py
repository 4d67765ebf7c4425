"""A language model that reads nothing: the zero-shot heuristics' reference for what word frequencies alone give.

Each heuristic compares log-probabilities of texts, and some comparisons favour common words whatever the
context: the Story Cloze Test's mean token log-probability picks the ending of commoner tokens, which is the
right one in 54% of the stories with the cpu recipe's books (docs/results.md), not 50%. Scored through the same
heuristics, this model says where a pre-trained model starts to read the text rather than count its words.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from genpt import io
from genpt.checkpoint import CHECKPOINTS
from genpt.data.shards import TokenShards
from genpt.errors import GenptError
from genpt.load import inference_device, load_tokenizer
from genpt.tokenizer import Tokenizer


class UnigramLM(nn.Module):
    """Every position predicts the same distribution: the counts of each id, add-one smoothed. It has the
    interface the scorers use (`config.n_ctx`, `model(ids).logits`), its logits being log-probabilities."""

    def __init__(self, counts: np.ndarray, n_ctx: int):
        super().__init__()
        smoothed = torch.as_tensor(counts, dtype=torch.float64) + 1.0
        self.logp = nn.Parameter((smoothed / smoothed.sum()).log().float(), requires_grad=False)
        self.config = SimpleNamespace(n_ctx=n_ctx)

    def forward(self, ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logp.expand(*ids.shape, -1))


def shards_of_run(run_dir: str | Path) -> Path:
    """The shards a pre-training run was trained on (its config.json's), refused by name where they are gone."""
    return _shards_of(run_dir, _run_config(run_dir))


def _run_config(run_dir: str | Path) -> dict:
    return io.read_json(Path(run_dir) / "config.json", "expected a pre-training run")


def _shards_of(run_dir: str | Path, config: dict) -> Path:
    shards_dir = config.get("data", {}).get("shards")
    if not shards_dir or not (Path(shards_dir) / "meta.json").is_file():
        raise GenptError(f"{run_dir}: the shards it was trained on ({shards_dir}) are not there; the unigram "
                         "reference counts their tokens")
    return Path(shards_dir)


def unigram_of_run(run_dir: str | Path) -> tuple[UnigramLM, Tokenizer]:
    """The unigram model of the training split a pre-training run read (its config.json's shards), on the GPU
    where there is one, with the run's tokenizer; refused by name where the shards are gone or were made with
    another tokenizer. A checkpoint folder (RUN/checkpoints/step_N, whose config names no shards) stands for its
    run."""
    run_dir = Path(run_dir)
    if run_dir.parent.name == CHECKPOINTS:
        run_dir = run_dir.parent.parent
    config = _run_config(run_dir)
    shards_dir = _shards_of(run_dir, config)
    shards = TokenShards(shards_dir)
    tokenizer = load_tokenizer(run_dir)
    if shards.tokenizer_fingerprint != tokenizer.fingerprint:
        raise GenptError(f"{shards_dir}: made with another tokenizer than {run_dir}'s")
    model = UnigramLM(shards.token_counts(), config["model"]["n_ctx"]).to(inference_device())
    return model, tokenizer


__all__ = ["UnigramLM", "shards_of_run", "unigram_of_run"]
