"""Settings: TOML files, --set overrides named as GPT-1's code names them, and clear errors."""

import dataclasses

import pytest

from genpt.config import PretrainConfig, load_pretrain_config
from genpt.errors import GenptError


def test_defaults_are_gpt1_pretraining_recipe():
    c = PretrainConfig()
    assert (c.train.lr, c.train.warmup, c.train.lr_schedule) == (2.5e-4, 2000, "cosine")
    assert (c.train.batch_size, c.train.grad_clip, c.train.weight_decay) == (64, 1.0, 0.01)


def test_set_overrides_apply_on_top_of_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model]\nn_layer = 4\nn_embd = 128\n[train]\nlr = 1e-3\n")
    c = load_pretrain_config(path, ["model.n_layer=2", "model.n_head=2", "train.batch_size=8",
                                    "train.dtype=bfloat16", "train.compile=true"])
    assert (c.model.n_layer, c.model.n_embd, c.model.n_head) == (2, 128, 2)
    assert (c.train.lr, c.train.batch_size, c.train.dtype, c.train.compile) == (1e-3, 8, "bfloat16", True)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_layers=2", "unknown setting 'model.n_layers'"),
        ("model.n_layer=two", "setting 'model.n_layer' expects an integer, got 'two'"),
        ("model.n_layer=0", "model.n_layer must be positive"),
        ("model.n_head=5", "must be divisible by model.n_head"),
        ("train.lr_schedule=step", "train.lr_schedule must be cosine, linear or constant"),
        ("train.attention_kernel=flash2", "train.attention_kernel must be one of torch, cudnn, flash"),
        ("train.batch_size=10", "multiple of train.micro_batch_size"),
        ("nonsense", "--set expects KEY=VALUE"),
        ("optimizer.lr=1", "unknown setting 'optimizer'"),
    ],
)
def test_bad_set_is_a_clear_error(override, message):
    overrides = [override] + (["train.micro_batch_size=4"] if "batch_size=10" in override else [])
    with pytest.raises(GenptError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_pretrain_config(None, overrides)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model\n")
    with pytest.raises(GenptError, match="bad.toml: not valid TOML"):
        load_pretrain_config(path)
    with pytest.raises(GenptError, match=r"missing\.toml: missing; expected a TOML settings file"):
        load_pretrain_config(tmp_path / "missing.toml")


def test_finetune_settings_come_from_defaults_then_toml_then_set_then_flags(tmp_path, monkeypatch):
    from genpt.cli import main
    from genpt.config import load_finetune_config
    from genpt.train import finetune as finetune_module

    toml = tmp_path / "ft.toml"
    toml.write_text("[finetune]\nlr = 1e-4\nepochs = 5\nbatch_size = 8\ndtype = \"bfloat16\"\n")
    cfg = load_finetune_config(toml, ["finetune.epochs=2", "finetune.batch_size=4"])
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.dtype) == (1e-4, 2, 4, "bfloat16")
    assert cfg.lm_coef is None  # lambda: chosen by the model size when fine-tuning starts
    class Called(Exception):
        pass

    def finetune(*args, **kwargs):
        raise Called(args[5])

    monkeypatch.setattr(finetune_module, "finetune", finetune)
    with pytest.raises(Called) as called:
        main(["finetune", "--init", "x", "--train", "t.tsv", "-o", str(tmp_path / "out"), "--task", "sst2",
              "--config", str(toml), "--set", "finetune.epochs=2", "--set", "finetune.batch_size=4",
              "--batch-size", "16"])
    cfg = called.value.args[0]
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.dtype) == (1e-4, 2, 16, "bfloat16")


def test_finetune_settings_are_the_training_step_settings_declared_once():
    from genpt.config import FinetuneConfig, StepSettings, TrainConfig

    shared = {f.name for f in dataclasses.fields(StepSettings)}
    assert shared <= {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert shared <= {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = FinetuneConfig(dtype="bfloat16", strategy="fsdp", grad_clip=0.5)
    assert {k: getattr(TrainConfig(**cfg.step_settings()), k) for k in shared} == cfg.step_settings()


def test_finetune_config_files_name_their_mistakes(tmp_path):
    from genpt.config import load_finetune_config

    toml = tmp_path / "ft.toml"
    toml.write_text("[train]\nlr = 1e-4\n")
    with pytest.raises(GenptError, match=r"unknown setting section\(s\) \['train'\]"):
        load_finetune_config(toml)
    toml.write_text("[finetune]\nlearning_rate = 1e-4\n")
    with pytest.raises(GenptError, match="unknown setting 'finetune.learning_rate'"):
        load_finetune_config(toml)
    with pytest.raises(GenptError, match="finetune.dtype must be float32 or bfloat16"):
        load_finetune_config(None, ["finetune.dtype=float16"])


def test_finetune_defaults_follow_the_model_size():
    from genpt.config import GPT1_FINETUNE, SMALL_MODEL_FINETUNE, FinetuneConfig, ModelConfig

    gpt1 = FinetuneConfig().for_model(ModelConfig())
    assert {k: getattr(gpt1, k) for k in GPT1_FINETUNE} == {"lr": 6.25e-5, "epochs": 3, "warmup_fraction": 0.002,
                                                           "lm_coef": 0.5, "clf_pdrop": 0.1}  # the paper's, at its size
    small = FinetuneConfig().for_model(ModelConfig(n_layer=4, n_embd=256, n_head=4))
    assert {k: getattr(small, k) for k in SMALL_MODEL_FINETUNE} == SMALL_MODEL_FINETUNE
    given = FinetuneConfig(lr=1e-5, lm_coef=0.0).for_model(ModelConfig(n_layer=4, n_embd=256, n_head=4))
    assert (given.lr, given.lm_coef) == (1e-5, 0.0)  # what the user sets is kept


def test_a_recipe_lies_under_the_toml_file_and_set(tmp_path):
    from genpt.recipes import recipe

    toml = tmp_path / "run.toml"
    toml.write_text("[model]\nn_layer = 6\n")
    config = load_pretrain_config(toml, ["train.lr=1e-3"], recipe("cpu"))
    assert (config.model.n_layer, config.model.n_embd) == (6, 256)  # the file's depth, the recipe's width
    assert (config.train.optimizer, config.train.lr, config.train.dtype) == ("muon", 1e-3, "auto")
    with pytest.raises(GenptError, match="--recipe 'gpu'"):
        recipe("gpu")
