"""The model factory: `model.arch` picks GPT-1's decoder or the paper's LSTM baseline."""

from __future__ import annotations

from genpt.config import ModelConfig
from genpt.lstm import LSTMLM
from genpt.model import GPT


def build_model(config: ModelConfig) -> GPT | LSTMLM:
    """A freshly initialised language model of the architecture `config.arch` names."""
    config.validate()
    return LSTMLM(config) if config.arch == "lstm" else GPT(config)


__all__ = ["build_model"]
