"""The nominal work of a training step, for throughput and MFU figures (bench/, docs/performance.md)."""

from __future__ import annotations

from genpt.config import ModelConfig


def count_flops_per_token(config: ModelConfig) -> float:
    """Training FLOPs per token (forward + backward): 6N for the matrices (N counts the tied head once)
    plus 12 x layers x context x width for the attention scores and their use, the convention of the
    PaLM paper's appendix B and nanoGPT's MFU, so figures compare with theirs."""
    n = config.n_layer * (4 * config.n_embd**2 + 2 * config.n_embd * config.inner_dim)
    n += config.vocab_size * config.n_embd  # useful work: a padded vocabulary's extra rows are not counted
    return 6 * n + 12 * config.n_layer * config.n_ctx * config.n_embd


__all__ = ["count_flops_per_token"]
