"""Hugging Face OpenAIGPT folders into genpt and back, checked with transformers' own classes and tokenizer."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import shared_data

from genpt.cli import main
from genpt.data.tasks import builtin_task
from genpt.errors import GenptError
from genpt.interop import convert, read
from genpt.interop.common import Converted
from genpt.interop.hf import write_hf
from genpt.load import resolve
from genpt.model import GPTForTask

transformers = pytest.importorskip("transformers")

SHAPE = dict(n_positions=64, n_embd=32, n_layer=2, n_head=4)
N_VOCAB = 40478
TEXT = "Hello world, isn't it a fine day — yes… “Quoted”, naïve café! <unk> 3.50$"


def hf_model(seed: int = 0, embed_std: float = 0.02):
    torch.manual_seed(seed)
    model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(vocab_size=N_VOCAB, **SHAPE))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
        model.transformer.tokens_embed.weight.normal_(0.0, embed_std)
    return model.eval()


@pytest.fixture(scope="module")
def gpt1_files(tmp_path_factory):
    vocab = shared_data("gpt1_bpe")
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.json").write_bytes((vocab / "encoder_bpe_40000.json").read_bytes())
    (folder / "merges.txt").write_bytes((vocab / "vocab_40000.bpe").read_bytes())
    return folder


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, gpt1_files):
    """What transformers itself saves: model.safetensors, config.json and its OpenAIGPTTokenizer.

    The token embeddings are wider than at initialisation so that, as in a trained model, the logits are far
    from uniform: the five special tokens genpt appends then take no measurable probability from the others.
    """
    folder = tmp_path_factory.mktemp("hf") / "openai-gpt"
    model = hf_model(embed_std=0.5)
    model.save_pretrained(folder)
    transformers.OpenAIGPTTokenizer.from_pretrained(gpt1_files).save_pretrained(folder)
    return model, folder


def test_hf_to_genpt_to_hf_gives_the_same_logits_in_transformers(hf_folder, tmp_path):
    source, folder = hf_folder
    convert(folder, tmp_path / "genpt", target="genpt")
    convert(tmp_path / "genpt", tmp_path / "hf", target="hf")
    exported = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, N_VOCAB, (2, SHAPE["n_positions"]))
    with torch.no_grad():
        want, got = source(ids).logits, exported(ids).logits
    assert (got[..., :N_VOCAB] - want).abs().max().item() <= 1e-5
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert len(tokenizer) == N_VOCAB + 5 and tokenizer.convert_ids_to_tokens([40478, 40480]) == ["<|start|>",
                                                                                                 "<|extract|>"]
    assert tokenizer.encode(TEXT) == transformers.AutoTokenizer.from_pretrained(folder).encode(TEXT)


def test_genpt_score_on_an_hf_import_gives_transformers_ids_and_logprobs(hf_folder, tmp_path, capsys):
    source, folder = hf_folder
    assert main(["convert", str(folder), "--from", "hf", "-o", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "run"), "--text", TEXT, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ids = transformers.AutoTokenizer.from_pretrained(folder).encode(TEXT)
    assert result["ids"] == ids
    with torch.no_grad():
        logp = source(torch.tensor([ids])).logits[0].log_softmax(-1)
    want = [logp[t - 1, ids[t]].item() for t in range(1, len(ids))]
    assert max(abs(a - b) for a, b in zip(result["logprobs"][1:], want, strict=True)) <= 1e-4


def test_pytorch_model_bin_and_vocab_files_import_like_safetensors_and_tokenizer_json(hf_folder, gpt1_files, tmp_path):
    source, folder = hf_folder
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_bytes((folder / "config.json").read_bytes())
    torch.save({k.removeprefix("transformer."): v for k, v in source.state_dict().items()},
               legacy / "pytorch_model.bin")  # as old checkpoints were saved: no prefix, lm_head included
    for name in ("vocab.json", "merges.txt"):
        (legacy / name).write_bytes((gpt1_files / name).read_bytes())
    a, b = read(folder, "hf"), read(legacy, "hf")
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert a.tokenizer.encode(TEXT) == b.tokenizer.encode(TEXT)


def test_release_pipeline_can_be_asked_for_on_an_hf_folder(hf_folder):
    pytest.importorskip("spacy", reason="the release pipeline needs ftfy and spaCy: pip install ftfy==6.3.1 "
                        "spacy==3.8.18")
    _, folder = hf_folder
    converted = read(folder, "hf", pipeline="release")
    assert converted.tokenizer.encode("isn't") == [544, 538]  # spaCy's "is" "n't", as the release
    assert read(folder, "hf").tokenizer.encode("isn't") == [1532, 247, 256, 241]  # transformers 5.x: is n ' t


def finetuned(transform: str, task_name: str, n_out: int, seed: int = 0) -> Converted:
    """A fine-tuned genpt classifier with random weights and a head bias far from zero."""
    from genpt.gpt1_tokenizer import find_vocabulary, transformers_tokenizer

    torch.manual_seed(seed)
    tokenizer = transformers_tokenizer(find_vocabulary(shared_data("gpt1_bpe")))
    from genpt import ModelConfig

    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_ctx=SHAPE["n_positions"], n_embd=SHAPE["n_embd"],
                         n_layer=SHAPE["n_layer"], n_head=SHAPE["n_head"])
    model = GPTForTask(config, transform, n_out).eval()
    with torch.no_grad():
        model.head.linear.bias.normal_(0.0, 1.0)
        for name, p in model.gpt.named_parameters():
            if "ln_" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    task = builtin_task(task_name).to_dict()
    state = {k: v for k, v in model.gpt.state_dict().items() if k != "lm_head.weight"}
    head = {k: v for k, v in model.head.state_dict().items()}
    return Converted(config, state, tokenizer, task=task, head={"n_out": n_out, "max_len": 64, "clf_pdrop": 0.1},
                     head_state=head), model


def padded_batch(tokenizer, texts, choices=1):
    seqs = [[tokenizer.start_id, *tokenizer.encode(t), tokenizer.extract_id] for t in texts]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tokenizer.pad_id] * (width - len(s)) for s in seqs])
    extract = torch.tensor([len(s) - 1 for s in seqs])
    return ids, extract


def test_classifier_exports_to_sequence_classification_with_the_same_logits(tmp_path):
    converted, model = finetuned("classification", "sst2", 2)
    write_hf(converted, tmp_path / "hf")
    hf = transformers.OpenAIGPTForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    ids, extract = padded_batch(converted.tokenizer, ["a fine film", "not good at all , sadly", "meh"])
    with torch.no_grad():
        want = model(ids[:, None], extract[:, None]).logits
        got = hf(ids).logits
    assert hf.config.id2label == {0: "0", 1: "1"}
    assert (got - want).abs().max().item() <= 1e-5


def test_multiple_choice_exports_to_double_heads_with_the_same_scores(tmp_path):
    converted, model = finetuned("multiple_choice", "story_cloze", 1)
    write_hf(converted, tmp_path / "hf")
    hf = transformers.OpenAIGPTDoubleHeadsModel.from_pretrained(tmp_path / "hf").eval()
    ids, extract = padded_batch(converted.tokenizer, ["he ran home . he slept", "he ran home . he flew away",
                                                       "she sang", "she sang a very long song indeed"])
    ids, extract = ids.view(2, 2, -1), extract.view(2, 2)
    with torch.no_grad():
        want = model(ids, extract).logits
        out = hf(ids, mc_token_ids=extract)
        lm = model.gpt(ids.view(4, -1)).logits
    assert (out.mc_logits - want).abs().max().item() <= 1e-5
    assert (out.logits.view(4, ids.size(-1), -1) - lm).abs().max().item() <= 1e-5  # the tied LM head too


def test_similarity_head_cannot_be_exported_and_says_why(tmp_path, capsys):
    converted, _ = finetuned("similarity", "mrpc", 2)
    with pytest.raises(GenptError, match="adds the extract states of both orderings"):
        write_hf(converted, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.slow
def test_finetune_init_accepts_an_hf_folder_and_converts_it_once(hf_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GENPT_CACHE", str(tmp_path / "cache"))
    _, folder = hf_folder
    first = resolve(folder)
    assert first.parent == tmp_path / "cache" / "converted" and (first / "model.safetensors").is_file()
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve(folder) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert resolve(first) == first  # a genpt checkpoint is used as it is

    from genpt.config import FinetuneConfig
    from genpt.data.tasks import Example
    from genpt.train.finetune import finetune

    examples = [Example((t,), label, f"x:{i}") for i, (t, label) in enumerate(
        [("a fine film", 1), ("dull and long", 0), ("loved it", 1), ("hated it", 0)])]
    cfg = FinetuneConfig(epochs=1, batch_size=2, device="cpu")
    result = finetune(folder, builtin_task("sst2"), None, None, tmp_path / "ft", cfg, train_examples=examples,
                      dev_examples=examples, progress=False)
    assert result.best_epoch == 1 and "accuracy" in result.best

    # ... and what it fine-tuned exports to transformers with the same class scores
    from genpt.load import load_finetuned

    convert(tmp_path / "ft", tmp_path / "ft-hf", target="hf")
    hf = transformers.OpenAIGPTForSequenceClassification.from_pretrained(tmp_path / "ft-hf").eval()
    tuned = load_finetuned(tmp_path / "ft")
    ids, extract = padded_batch(tuned.tokenizer, ["a fine film", "hated it so much"])
    with torch.no_grad():
        assert (hf(ids).logits - tuned.model(ids[:, None], extract[:, None]).logits).abs().max().item() <= 1e-5


@pytest.fixture
def broken(hf_folder, tmp_path):
    _, folder = hf_folder
    return Path(shutil.copytree(folder, tmp_path / "broken"))


def convert_cli(folder, out, capsys) -> tuple[int, str]:
    code = main(["convert", str(folder), "--from", "hf", "-o", str(out)])
    return code, capsys.readouterr().err.strip()


def test_missing_config_is_named(broken, tmp_path, capsys):
    (broken / "config.json").unlink()
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err and "config.json: missing" in err


def test_missing_weights_are_reported(broken, tmp_path, capsys):
    (broken / "model.safetensors").unlink()
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "no weights (expected model.safetensors or pytorch_model.bin)" in err


def test_a_tensor_of_the_wrong_shape_is_named(broken, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    weights = load_file(broken / "model.safetensors")
    weights["transformer.h.1.mlp.c_fc.bias"] = weights["transformer.h.1.mlp.c_fc.bias"][:100]
    save_file(weights, broken / "model.safetensors")
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err
    assert "model.safetensors: tensor transformer.h.1.mlp.c_fc.bias has shape (100,), expected (128,)" in err


def test_a_vocabulary_of_another_size_is_named(broken, tmp_path, capsys):
    config = json.loads((broken / "config.json").read_text())
    from safetensors.torch import load_file, save_file

    weights = load_file(broken / "model.safetensors")
    rows = 41000
    weights["transformer.tokens_embed.weight"] = torch.zeros(rows, SHAPE["n_embd"])
    save_file(weights, broken / "model.safetensors")
    config["vocab_size"] = rows
    (broken / "config.json").write_text(json.dumps(config))
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err
    assert "tokens_embed has 41,000 rows but the tokenizer has 40,483 ids" in err


def test_a_truncated_weights_file_is_named(broken, tmp_path, capsys):
    path = broken / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err and "unreadable weights" in err
