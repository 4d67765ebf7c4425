"""genpt: generative pre-training and discriminative fine-tuning of Transformer language models (GPT-1)."""

from genpt.config import ModelConfig, PretrainConfig, TrainConfig
from genpt.errors import GenptError
from genpt.load import Loaded, load_lm, load_model
from genpt.model import GPT, GPTOutput

__all__ = ["GPT", "GPTOutput", "GenptError", "Loaded", "ModelConfig", "PretrainConfig", "TrainConfig", "load_lm",
           "load_model"]
__version__ = "0.1.0"
