"""`genpt.load`: a model from any folder (run, checkpoint, fine-tuned run, Hugging Face folder), and the typed
reader of a checkpoint's config.json it rests on."""

import dataclasses

import pytest
import torch

from genpt import checkpoint as ckpt
from genpt.config import ModelConfig
from genpt.data.corpus import train_tokenizer
from genpt.data.tasks import builtin_task
from genpt.errors import GenptError
from genpt.interop import convert
from genpt.load import load_finetuned, load_lm, load_model
from genpt.model import GPT, GPTForTask

CONFIG = ModelConfig(n_ctx=32, n_embd=32, n_layer=2, n_head=2)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    text = tmp_path_factory.mktemp("text") / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    tokenizer = train_tokenizer([text], vocab_size=300)
    tokenizer.save(text.parent / "tokenizer.json")
    return tokenizer, text.parent / "tokenizer.json"


def meta(tokenizer, **extra) -> dict:
    config = dataclasses.replace(CONFIG, vocab_size=tokenizer.vocab_size)
    return {"model": dataclasses.asdict(config),
            "tokenizer": {"fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size}, **extra}


@pytest.fixture(scope="module")
def run(tokenizer, tmp_path_factory):
    """A pre-training run with two checkpoints; the newer holds `newest`."""
    tok, tokenizer_json = tokenizer
    folder = tmp_path_factory.mktemp("run")
    config = dataclasses.replace(CONFIG, vocab_size=tok.vocab_size)
    for step, seed in ((10, 1), (20, 2)):
        torch.manual_seed(seed)
        newest = GPT(config).eval()
        ckpt.save_checkpoint(folder, step, newest, None, {"tokens_seen": 0}, config=meta(tok),
                             tokenizer_json=tokenizer_json)
    return folder, newest


@pytest.fixture(scope="module")
def finetuned(tokenizer, tmp_path_factory):
    """A fine-tuned run on SST-2 whose best epoch is in best/."""
    tok, tokenizer_json = tokenizer
    folder = tmp_path_factory.mktemp("ft")
    task = builtin_task("sst2")
    model = GPTForTask(dataclasses.replace(CONFIG, vocab_size=tok.vocab_size), task.transform, 2).eval()
    head = {"n_out": 2, "max_len": 24, "clf_pdrop": 0.1}
    ckpt.write_checkpoint(folder / ckpt.BEST, model, None, {"step": 3},
                          config=meta(tok, task=task.to_dict(), head=head), tokenizer_json=tokenizer_json)
    return folder, model


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_a_run_folder_gives_its_newest_checkpoint(run, tokenizer):
    folder, newest = run
    loaded = load_model(folder)
    assert loaded.checkpoint == folder / "checkpoints" / "step_00000020"
    assert isinstance(loaded.model, GPT) and not loaded.model.training and same_weights(loaded.model, newest)
    assert loaded.tokenizer.fingerprint == tokenizer[0].fingerprint
    assert loaded.task is None and loaded.max_len == CONFIG.n_ctx


def test_a_checkpoint_folder_is_used_as_it_is(run):
    folder, _ = run
    older = folder / "checkpoints" / "step_00000010"
    assert load_model(older).checkpoint == older


def test_a_finetuned_run_gives_its_best_epoch_with_task_and_head(finetuned):
    folder, model = finetuned
    loaded = load_finetuned(folder)
    assert loaded.checkpoint == folder / ckpt.BEST and isinstance(loaded.model, GPTForTask)
    assert loaded.task.name == "sst2" and loaded.task.label_names == ("0", "1") and loaded.max_len == 24
    assert same_weights(loaded.model, model)
    assert same_weights(load_lm(folder), model.gpt)  # its language model: the transformer, LM head tied


def test_a_pretrained_model_is_not_taken_for_a_finetuned_one(run):
    with pytest.raises(GenptError, match="a pre-trained model, not a fine-tuned one"):
        load_finetuned(run[0])


def test_a_hugging_face_folder_is_converted_into_the_cache_and_gives_the_same_logits(run, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    folder, newest = run
    convert(folder, tmp_path / "hf", target="hf")
    monkeypatch.setenv("GENPT_CACHE", str(tmp_path / "cache"))
    loaded = load_model(tmp_path / "hf")
    assert loaded.checkpoint.parent == tmp_path / "cache" / "converted"
    ids = torch.randint(0, newest.config.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, newest(ids).logits, rtol=0, atol=1e-5)


def test_config_json_is_read_into_types(finetuned, tokenizer):
    info = ckpt.read_info(finetuned[0] / ckpt.BEST)
    assert info.model == dataclasses.replace(CONFIG, vocab_size=tokenizer[0].vocab_size)
    assert info.tokenizer == ckpt.TokenizerInfo(tokenizer[0].fingerprint, tokenizer[0].vocab_size)
    assert info.head == ckpt.Head(n_out=2, max_len=24, clf_pdrop=0.1) and info.task == builtin_task("sst2")
    assert info.finetuned and info.converted_from is None


@pytest.mark.parametrize("content, message", [
    ("{", r"config\.json: not valid JSON"),
    ('{"model": {"n_layer": "two"}}', r"config\.json: setting 'model\.n_layer' expects an integer"),
    ('{"model": {}, "task": {"name": "x", "transform": "classification", "target": "class", "columns": ["a"]}}',
     r"config\.json: a tokenizer, task or head section is incomplete"),
])
def test_a_damaged_config_json_is_named_in_one_line(run, tmp_path, content, message):
    folder = tmp_path / "damaged"
    ckpt.write_checkpoint(folder, run[1], None, {"step": 0}, config={})
    (folder / "config.json").write_text(content)
    with pytest.raises(GenptError, match=message) as e:
        load_model(folder)
    assert "\n" not in str(e.value)


def test_a_folder_without_a_model_is_named(tmp_path):
    with pytest.raises(GenptError, match="holds no checkpoint"):
        load_model(tmp_path)
