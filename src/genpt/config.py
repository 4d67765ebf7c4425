"""Settings as dataclasses: GPT-1's values are the defaults; TOML files and `--set key=value` override them."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genpt import io
from genpt.errors import GenptError

# The choices a setting (or the flag beside it) takes, each listed once.
# train.attention_kernel: which fused attention kernel to try first (genpt/kernels/sdpa_priority.py).
ATTENTION_KERNELS = ("torch", "cudnn", "flash", "efficient", "math")
DTYPES = ("float32", "bfloat16")
STRATEGIES = ("ddp", "fsdp")  # under torchrun: replicate the model, or shard it
HOST_MEMORY = ("keep", "system")  # train.host_memory: genpt.train.host_memory
OPTIMIZERS = ("adamw", "muon")
LR_SCHEDULES = ("cosine", "linear", "constant")
# train.kernels: whose fused kernels train the model (genpt/kernels/backends.py); train.compile_mode: torch.compile's.
TRAIN_KERNELS = ("torch", "liger")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class ModelConfig:
    """The Transformer decoder's shape. Names follow GPT-1's code (`n_layer`, `n_embd`, ...)."""

    vocab_size: int = 40478
    n_ctx: int = 512
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int = 0  # 0 means 4 * n_embd, as in GPT-1
    afn: str = "gelu"  # GPT-1's GELU is the tanh approximation
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    # Embedding rows rounded up to a multiple of this (64 suits GPU matrix units; GPT-1's 40,478 ids
    # become 40,512). The extra rows are never predicted: the logits stop at vocab_size.
    pad_vocab_multiple: int = 1
    # transformer (GPT-1) | lstm: the paper's single-layer LSTM baseline (genpt.lstm), which reads
    # vocab_size, n_ctx (training windows), n_embd (embedding), lstm_hidden, the dropouts and the init.
    arch: str = "transformer"
    lstm_hidden: int = 0  # arch=lstm: the LSTM's width; 0 means n_embd

    @property
    def inner_dim(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.pad_vocab_multiple) * self.pad_vocab_multiple

    def num_parameters(self) -> int:
        """Parameters of a model of this shape (embeddings, blocks, final norm), before building it."""
        block = 4 * self.n_embd * self.n_embd + 2 * self.n_embd * self.inner_dim + 9 * self.n_embd + self.inner_dim
        return (self.padded_vocab_size + self.n_ctx) * self.n_embd + self.n_layer * block

    def validate(self) -> None:
        _finite(self)
        _positive(self, "vocab_size", "n_ctx", "n_embd", "n_layer", "n_head", "pad_vocab_multiple",
                  "layer_norm_epsilon")
        if self.arch not in ARCHITECTURES:
            raise GenptError(f"model.arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.lstm_hidden < 0:
            raise GenptError(f"model.lstm_hidden must not be negative, got {self.lstm_hidden}")
        if self.n_inner < 0:
            raise GenptError(f"model.n_inner must be 0 (4 x n_embd) or positive, got {self.n_inner}")
        if self.initializer_range < 0:
            raise GenptError(f"model.initializer_range must not be negative, got {self.initializer_range}")
        if self.arch == "transformer":
            _fits_in_memory(self)
        if self.arch == "transformer" and self.n_embd % self.n_head:
            raise GenptError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})"
            )
        if self.afn not in ACTIVATIONS:
            raise GenptError(f"model.afn must be one of {sorted(ACTIVATIONS)}, got {self.afn!r}")
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise GenptError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")


ACTIVATIONS = ("gelu", "gelu_exact", "relu", "silu")
ARCHITECTURES = ("transformer", "lstm")


@dataclass
class StepSettings:
    """The settings of an optimizer step that pre-training and fine-tuning share, declared once.

    `TrainConfig` and `FinetuneConfig` inherit these (inheritance rather than a nested section, so that
    `--set train.dtype=...` and `--set finetune.dtype=...` and both config.json layouts stay flat). The
    learning rate, batch size and seed are not here: each stage declares its own, because their
    defaults are each stage's GPT-1 recipe (2.5e-4 / 64 / 1234 and 6.25e-5 / 32 / 42).
    """

    micro_batch_size: int = 0  # sequences per forward pass; 0 means batch_size (no accumulation)
    weight_decay: float = 0.01  # GPT-1's "modified L2" on matrices only
    grad_clip: float = 1.0
    dtype: str = "float32"  # float32 | bfloat16 (autocast) | auto (pre-training: the faster, timed on the run's step)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    strategy: str = "ddp"  # under torchrun: ddp (replicate) | fsdp (shard parameters, gradients, optimizer)
    activation_checkpointing: bool = False  # recompute each block in the backward pass to save memory
    collective_timeout: float = 600.0  # seconds a rank waits for the others before the job stops
    host_memory: str = "keep"  # keep (freed blocks stay in a CPU training process: no page faults each step) | system

    def _validate_step(self, prefix: str, batch_size: int, dtypes: tuple[str, ...] = DTYPES) -> None:
        if batch_size % (self.micro_batch_size or batch_size):
            raise GenptError(
                f"{prefix}batch_size ({batch_size}) must be a multiple of "
                f"{prefix}micro_batch_size ({self.micro_batch_size or batch_size})"
            )
        if self.dtype not in dtypes:
            raise GenptError(f"{prefix}dtype must be {' or '.join(dtypes)}, got {self.dtype!r}")
        if self.strategy not in STRATEGIES:
            raise GenptError(f"{prefix}strategy must be ddp or fsdp, got {self.strategy!r}")
        if self.host_memory not in HOST_MEMORY:
            raise GenptError(f"{prefix}host_memory must be {' or '.join(HOST_MEMORY)}, got {self.host_memory!r}")
        if self.collective_timeout <= 0:
            raise GenptError(f"{prefix}collective_timeout must be positive (seconds), got {self.collective_timeout}")


@dataclass
class TrainConfig(StepSettings):
    """Optimisation settings. Defaults are GPT-1's pre-training recipe; the warm-up scales with `max_steps`
    (GPT-1's 2,000 updates at its length, 2% of a shorter run). With `max_minutes` the schedule follows the
    share of the time used (train/schedule.py's Budget) and ends, decayed, when the time or the steps run out."""

    batch_size: int = 64  # sequences per optimizer step (GPT-1: 64 x 512 tokens)
    lr: float = 2.5e-4
    min_lr: float = 0.0  # GPT-1 anneals to zero
    warmup_steps: int = -1  # -1: warmup_fraction of the run
    warmup_fraction: float = 0.02  # GPT-1's 2,000 warm-up updates of the default 100,000; used when warmup_steps is -1
    lr_schedule: str = "cosine"  # cosine | linear | constant
    max_steps: int = 100_000
    max_minutes: float = 0.0  # 0 means no time limit
    optimizer: str = "adamw"  # adamw (GPT-1) | muon (Muon on the blocks' matrices, AdamW on the rest)
    muon_lr: float = 0.0  # Muon's peak rate (RMS-matched to AdamW's); 0 means train.lr
    muon_momentum: float = 0.95
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    seed: int = 1234
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's: default | reduce-overhead (CUDA graphs) | max-autotune | ...
    kernels: str = "torch"  # torch | liger (liger-kernel's fused linear + cross-entropy and LayerNorm, CUDA)
    float8: bool = False  # torchao's float8 training of the blocks' linear layers (CUDA, compute capability >= 8.9)
    attention_kernel: str = "torch"  # SDPA's first choice: torch (its own) | cudnn | flash | efficient | math
    log_interval: int = 10
    eval_interval: int = 200
    eval_batches: int = 20
    checkpoint_interval: int = 500
    checkpoint_minutes: float = 10.0  # also save when this long has passed since the last save; 0: steps only
    keep_checkpoints: int = 3

    @property
    def warmup(self) -> int:
        """Warm-up steps: `warmup_steps`, or the run's `warmup_fraction` (2,000 at GPT-1's length, 3 of 150)."""
        if self.warmup_steps >= 0:
            return self.warmup_steps
        return max(1, round(self.warmup_fraction * self.max_steps))

    @property
    def micro_batch(self) -> int:
        return self.micro_batch_size or self.batch_size

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_batch

    def validate(self) -> None:
        _finite(self)
        _positive(self, "batch_size", "lr", "max_steps", "log_interval", "eval_interval", "eps",
                  "eval_batches", "checkpoint_interval", "keep_checkpoints")
        self._validate_step("train.", self.batch_size, (*DTYPES, "auto"))
        if self.lr_schedule not in LR_SCHEDULES:
            raise GenptError(
                f"train.lr_schedule must be cosine, linear or constant, got {self.lr_schedule!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise GenptError(f"train.optimizer must be adamw or muon, got {self.optimizer!r}")
        if self.optimizer == "muon" and self.strategy == "fsdp":
            raise GenptError("train.optimizer=muon needs whole matrices: use train.strategy=ddp, not fsdp")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise GenptError(f"train.attention_kernel must be one of {', '.join(ATTENTION_KERNELS)}, "
                             f"got {self.attention_kernel!r}")
        if self.kernels not in TRAIN_KERNELS:
            raise GenptError(f"train.kernels must be one of {', '.join(TRAIN_KERNELS)}, got {self.kernels!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise GenptError(f"train.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        if (self.kernels != "torch" or self.float8) and self.strategy == "fsdp":
            raise GenptError("train.kernels and train.float8 swap whole layers: use train.strategy=ddp, not fsdp")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise GenptError(f"train.muon_momentum must be in [0, 1), got {self.muon_momentum}")
        if self.warmup_steps < -1:
            raise GenptError(f"train.warmup_steps must be -1 (warmup_fraction of the run) or more, "
                             f"got {self.warmup_steps}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise GenptError(f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        for name in ("max_minutes", "weight_decay", "grad_clip", "min_lr", "muon_lr", "seed",
                     "micro_batch_size", "checkpoint_minutes"):
            if getattr(self, name) < 0:
                raise GenptError(f"train.{name} must not be negative, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise GenptError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class DataConfig:
    """Where pre-training reads its token shards (written by `genpt prepare`)."""

    shards: str = "data/shards"


@dataclass
class PretrainConfig:
    """Everything a pre-training run needs; saved as `config.json` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> None:
        self.model.validate()
        self.train.validate()
        if self.model.arch == "lstm" and self.train.optimizer == "muon":
            raise GenptError("train.optimizer=muon trains Transformer blocks' matrices; model.arch=lstm has none: "
                             "use train.optimizer=adamw")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FinetuneConfig(StepSettings):
    """Discriminative fine-tuning settings. Defaults are GPT-1's (section 4.1 of the paper) for a model of
    GPT-1's size; the five left as None are chosen by the model's size (`for_model`)."""

    lr: float | None = None  # GPT-1: 6.25e-5
    batch_size: int = 32
    epochs: int | None = None  # GPT-1: 3
    warmup_fraction: float | None = None  # GPT-1: linear warm-up over 0.2% of training, then linear decay
    lm_coef: float | None = None  # lambda in L3 = L2 + lambda * L1 (GPT-1: 0.5); 0 trains without the auxiliary LM
    clf_pdrop: float | None = None  # GPT-1: 0.1
    scratch: bool = False  # random initialisation ("without pre-training")
    transfer_layers: int = -1  # -1: all blocks; N: the embeddings and the first N blocks only
    max_len: int = 0  # 0 means the model's context
    seed: int = 42
    eval_batch_size: int = 64
    # False: only best/ is written, no checkpoint to resume from each epoch. A run of seconds on a GPU restarts
    # sooner than it saves its optimizer (1.2 GB at GPT-1's size); an interrupted one then starts over.
    resume_checkpoints: bool = True

    def for_model(self, model: ModelConfig) -> FinetuneConfig:
        """These settings with the size-dependent ones not given filled in: GPT-1's for a model of its size,
        SMALL_MODEL_FINETUNE's below SMALL_MODEL parameters in the blocks."""
        small = 12 * model.n_layer * model.n_embd**2 < SMALL_MODEL
        chosen = SMALL_MODEL_FINETUNE if small else GPT1_FINETUNE
        resolved = dataclasses.replace(self, **{k: v for k, v in chosen.items() if getattr(self, k) is None})
        resolved.validate()
        return resolved

    def validate(self) -> None:
        _finite(self)
        _positive(self, "batch_size", "eval_batch_size")
        for name in ("lr", "epochs"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise GenptError(f"finetune.{name} must be positive, got {getattr(self, name)}")
        self._validate_step("finetune.", self.batch_size)
        for name in ("weight_decay", "grad_clip", "seed", "max_len", "micro_batch_size"):
            if getattr(self, name) < 0:
                raise GenptError(f"finetune.{name} must not be negative, got {getattr(self, name)}")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            raise GenptError(f"finetune.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.lm_coef is not None and self.lm_coef < 0:
            raise GenptError(f"finetune.lm_coef must not be negative, got {self.lm_coef}")
        if self.clf_pdrop is not None and not 0.0 <= self.clf_pdrop < 1.0:
            raise GenptError(f"finetune.clf_pdrop must be in [0, 1), got {self.clf_pdrop}")

    def step_settings(self) -> dict[str, Any]:
        """The shared step settings, as keyword arguments for the loop's `TrainConfig`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(StepSettings)}


def _finite(section: Any) -> None:
    """NaN passes every comparison's negation and inf every lower bound: refuse both by name first."""
    prefix = _SECTION_NAMES.get(type(section), "")
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise GenptError(f"{prefix}{f.name} must be a finite number, got {value}")


def _fits_in_memory(config: ModelConfig) -> None:
    """A shape whose weights alone exceed this machine's memory would fail in allocation or be killed."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no limit known
        return
    needed = 4 * config.num_parameters()  # float32 weights, before gradients and optimizer state
    if needed > memory:
        raise GenptError(
            f"model: {config.num_parameters():,} parameters need {needed / 2**30:,.0f} GiB for the weights alone, "
            f"more than this machine's {memory / 2**30:,.0f} GiB (model.n_ctx={config.n_ctx}, "
            f"model.n_embd={config.n_embd}, model.n_layer={config.n_layer}, model.vocab_size={config.vocab_size})")


# Fine-tuning by model size. GPT-1's values were set for its 85M parameters in the blocks (117M in all);
# a model a few million parameters big, pre-trained for minutes, needs a larger rate to move in a few
# epochs (chosen on the demo's genre dev set: bench/results/cpu-recipe-2026-12-01/genre.jsonl), and at that
# rate a warm-up of 10% of the steps: with GPT-1's 0.2% the first steps, which are almost all at the peak,
# knocked SST-2 without the auxiliary LM onto the majority class (dev 50.9% against 75.5%, docs/results.md).
GPT1_FINETUNE = {"lr": 6.25e-5, "epochs": 3, "warmup_fraction": 0.002, "lm_coef": 0.5, "clf_pdrop": 0.1}
SMALL_MODEL_FINETUNE = {"lr": 1e-3, "epochs": 3, "warmup_fraction": 0.1, "lm_coef": 0.5, "clf_pdrop": 0.1}
SMALL_MODEL = 20_000_000  # parameters in the blocks (12 * n_layer * n_embd^2); GPT-1 has 85M


def _positive(section: Any, *names: str) -> None:
    prefix = _SECTION_NAMES.get(type(section), "")
    for name in names:
        value = getattr(section, name)
        if value <= 0:
            raise GenptError(f"{prefix}{name} must be positive, got {value}")


_SECTION_NAMES = {ModelConfig: "model.", TrainConfig: "train.", DataConfig: "data.", FinetuneConfig: "finetune."}


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from nested dicts, rejecting unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise GenptError(f"{where or 'config'}: expected a table of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in known:
            raise GenptError(f"unknown setting {path!r}; known: {', '.join(sorted(known))}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = from_dict(kind, value, f"{path}.")
        else:
            values[key] = _coerce(path, kind, value)
    return cls(**values)


def _coerce(path: str, kind: Any, value: Any) -> Any:
    """Check that a TOML/JSON value fits the field's type; ints are accepted where floats are."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None:
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise GenptError(f"setting {path!r} expects {_TYPE_WORDS.get(kind, kind)}, got {value!r}")


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `section.key=value` into a key path and a value parsed as TOML would parse it."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise GenptError(f"--set expects KEY=VALUE (e.g. model.n_layer=2), got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string: --set train.dtype=bfloat16
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge `--set` overrides into a nested settings dict (validated later by `from_dict`)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise GenptError(f"--set {text!r}: {part!r} is a setting, not a section")
        node[path[-1]] = value
    return data


def load_toml(path: str | Path) -> dict[str, Any]:
    """A `--config` settings file; a missing, unreadable or invalid one is a GenptError naming it."""
    text = io.read_text(path, "TOML settings", "expected a TOML settings file (--config)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GenptError(f"{path}: not valid TOML: {e}") from None


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] = (),
                         base: dict[str, Any] | None = None) -> PretrainConfig:
    """Defaults, then `base` (a recipe's tables), then the TOML file, then `--set` overrides (the CLI's flags
    come last among them); validated."""
    data = base or {}
    for section, table in (load_toml(path) if path else {}).items():
        if isinstance(table, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **table}
        else:
            data[section] = table
    config = from_dict(PretrainConfig, apply_overrides(data, list(overrides)))
    config.validate()
    return config


def load_finetune_config(path: str | Path | None = None, overrides: list[str] = ()) -> FinetuneConfig:
    """As `load_pretrain_config`, for a file with one [finetune] table and `finetune.KEY=VALUE` overrides."""
    data = apply_overrides(load_toml(path) if path else {}, list(overrides))
    if extra := sorted(set(data) - {"finetune"}):
        raise GenptError(f"{path or '--set'}: unknown setting section(s) {extra}; fine-tuning takes [finetune] "
                         "(finetune.KEY=VALUE)")
    config = from_dict(FinetuneConfig, data.get("finetune", {}), "finetune.")
    config.validate()
    return config

