"""genpt: generative pre-training and discriminative fine-tuning of Transformer language models (GPT-1)."""

from genpt.config import ModelConfig, PretrainConfig, TrainConfig
from genpt.errors import GenptError
from genpt.model import GPT, GPTOutput
from genpt.train.checkpoint import load

__all__ = ["GPT", "GPTOutput", "GenptError", "ModelConfig", "PretrainConfig", "TrainConfig", "load"]
__version__ = "0.1.0"
