"""The original GPT-1 release layout (params_shapes.json + params_0..9.npy) into genpt and on to transformers."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data

from genpt import GPT, ModelConfig
from genpt.cli import main
from genpt.data.corpus import train_tokenizer
from genpt.errors import GenptError
from genpt.gpt1_tokenizer import ENCODER_FILE, MERGES_FILE, GPT1Tokenizer
from genpt.interop import convert, read
from genpt.interop.openai import read_release_arrays, release_shapes, to_release

transformers = pytest.importorskip("transformers")
pytest.importorskip("ftfy", reason="the release's tokenizer needs ftfy: pip install ftfy==6.3.1")
pytest.importorskip("spacy", reason="the release's tokenizer needs spaCy: pip install spacy==3.8.18")

SHAPE = dict(n_positions=64, n_embd=32, n_layer=2, n_head=4)
N_VOCAB = 40478


def hf_model(seed: int = 0):
    """A random OpenAIGPTLMHeadModel over GPT-1's vocabulary, with LayerNorms and biases away from their init."""
    torch.manual_seed(seed)
    model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(vocab_size=N_VOCAB, **SHAPE))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
    return model.eval()


def write_release_by_hand(model, folder, vocab_dir):
    """The release layout, written here independently of genpt: graph order, (1, in, out) convolutions,
    the flat arrays concatenated and cut into 10 files."""
    sd = {k.removeprefix("transformer."): v.detach().numpy() for k, v in model.state_dict().items()}
    arrays = [sd["positions_embed.weight"], sd["tokens_embed.weight"]]
    for i in range(model.config.n_layer):
        p = f"h.{i}."
        arrays += [sd[p + "attn.c_attn.weight"][None], sd[p + "attn.c_attn.bias"], sd[p + "attn.c_proj.weight"][None],
                   sd[p + "attn.c_proj.bias"], sd[p + "ln_1.weight"], sd[p + "ln_1.bias"],
                   sd[p + "mlp.c_fc.weight"][None], sd[p + "mlp.c_fc.bias"], sd[p + "mlp.c_proj.weight"][None],
                   sd[p + "mlp.c_proj.bias"], sd[p + "ln_2.weight"], sd[p + "ln_2.bias"]]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params_shapes.json").write_text(json.dumps([list(a.shape) for a in arrays]))
    flat = np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float32)
    for i, part in enumerate(np.array_split(flat, 10)):
        np.save(folder / f"params_{i}.npy", part)
    for name in (ENCODER_FILE, MERGES_FILE):
        (folder / name).write_bytes((vocab_dir / name).read_bytes())
    return folder


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    vocab_dir = shared_data("gpt1_bpe")
    model = hf_model()
    return model, write_release_by_hand(model, tmp_path_factory.mktemp("release") / "model", vocab_dir)


def test_openai_to_genpt_to_hf_gives_the_same_logits_in_transformers(release, tmp_path):
    source, folder = release
    convert(folder, tmp_path / "genpt", source="openai", target="genpt", n_head=SHAPE["n_head"])
    convert(tmp_path / "genpt", tmp_path / "hf", source="genpt", target="hf")
    exported = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, N_VOCAB, (2, SHAPE["n_positions"]))
    with torch.no_grad():
        want, got = source(ids).logits, exported(ids).logits
    assert got.shape[-1] == N_VOCAB + 5  # start, delimiter, extract, end of text, pad
    assert (got[..., :N_VOCAB] - want).abs().max().item() <= 1e-5


def test_release_to_genpt_and_back_gives_the_same_arrays_and_vocabulary(release, tmp_path, capsys):
    _, folder = release
    assert main(["convert", str(folder), "-o", str(tmp_path / "genpt"), "--n-head", "4"]) == 0
    assert main(["convert", str(tmp_path / "genpt"), "--to", "openai", "-o", str(tmp_path / "back")]) == 0
    want_shapes, want = read_release_arrays(folder)
    got_shapes, got = read_release_arrays(tmp_path / "back")
    assert got_shapes == want_shapes
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    for i in range(10):  # cut into the shards as the test's release (and the original) is
        assert np.load(tmp_path / "back" / f"params_{i}.npy").shape == np.load(folder / f"params_{i}.npy").shape
    assert (tmp_path / "back" / MERGES_FILE).read_bytes() == (folder / MERGES_FILE).read_bytes()
    assert json.loads((tmp_path / "back" / ENCODER_FILE).read_text()) == json.loads((folder / ENCODER_FILE).read_text())


def test_a_fine_tuned_model_or_another_vocabulary_is_not_written_as_a_release(release, tmp_path):
    from genpt.interop.common import Converted
    from genpt.interop.openai import write_release

    tuned = read(release[1], "openai", n_head=SHAPE["n_head"])
    tuned.task = {"name": "sst2", "transform": "classification"}
    with pytest.raises(GenptError, match="task head has no place in the release layout"):
        write_release(tuned, tmp_path / "out")

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 50)
    tokenizer = train_tokenizer([text], vocab_size=300)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_ctx=16, n_embd=32, n_layer=1, n_head=4)
    with pytest.raises(GenptError, match="holds GPT-1's vocabulary only"):
        write_release(Converted(config, GPT(config).state_dict(), tokenizer, source="genpt:x"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_genpt_score_on_a_release_import_tokenizes_with_the_release_pipeline(release, tmp_path, capsys):
    _, folder = release
    assert main(["convert", str(folder), "-o", str(tmp_path / "run"), "--n-head", "4"]) == 0  # format detected
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["tokenizer"]["kind"] == "gpt1-release" and config["model"]["vocab_size"] == N_VOCAB + 5
    capsys.readouterr()
    assert main(["score", str(tmp_path / "run"), "--text", "Isn't it?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ids"] == [544, 538, 507, 257]  # spaCy's "is" "n't", as released


def test_release_import_appends_special_embeddings_and_uses_the_release_tokenizer(release):
    _, folder = release
    converted = read(folder, "openai", n_head=SHAPE["n_head"], seed=3)
    tokens = converted.state["tokens_embed.weight"]
    assert tokens.shape == (N_VOCAB + 5, SHAPE["n_embd"]) and converted.config.vocab_size == N_VOCAB + 5
    tok = converted.tokenizer
    assert isinstance(tok, GPT1Tokenizer)
    assert (tok.start_id, tok.delimiter_id, tok.extract_id) == (40478, 40479, 40480)  # where the original put them
    new = tokens[N_VOCAB:]
    assert 0.01 < new.std().item() < 0.03  # N(0, 0.02)
    again = read(folder, "openai", n_head=SHAPE["n_head"], seed=3).state["tokens_embed.weight"][N_VOCAB:]
    assert torch.equal(new, again)


def test_n_ctx_keeps_the_first_positions(release):
    _, folder = release
    full = read(folder, "openai", n_head=SHAPE["n_head"])
    cut = read(folder, "openai", n_head=SHAPE["n_head"], n_ctx=16)
    assert cut.config.n_ctx == 16
    assert torch.equal(cut.state["positions_embed.weight"], full.state["positions_embed.weight"][:16])
    with pytest.raises(GenptError, match="--n-ctx 65"):
        read(folder, "openai", n_head=SHAPE["n_head"], n_ctx=65)


def test_gpt1_shapes_equal_the_real_params_shapes_json_without_allocating():
    real = json.loads(shared_data("gpt1_bpe", "params_shapes.json").read_text())
    config = ModelConfig()  # GPT-1's defaults
    assert release_shapes(config, N_VOCAB) == real
    with torch.device("meta"):  # 116M parameters, no memory
        state = GPT(ModelConfig(vocab_size=N_VOCAB + 5)).state_dict()
    assert [list(t.shape) for t in to_release(state, config.n_layer, N_VOCAB)] == real
    assert sum(math.prod(s) for s in real) == 116_534_784


def test_real_shapes_are_read_as_gpt1(tmp_path):
    from genpt.interop.openai import _model_shape, _read_shapes

    folder = shared_data("gpt1_bpe")
    config, n_vocab = _model_shape(folder, _read_shapes(folder), 12)
    assert (config.n_ctx, config.n_embd, config.n_layer, config.inner_dim, n_vocab) == (512, 768, 12, 3072, N_VOCAB)


@pytest.fixture
def broken(release, tmp_path):
    """A fresh copy of the release folder to damage."""
    _, folder = release
    return Path(shutil.copytree(folder, tmp_path / "broken"))


def convert_cli(folder, out, capsys) -> tuple[int, str]:
    code = main(["convert", str(folder), "--from", "openai", "--to", "genpt", "-o", str(out), "--n-head", "4"])
    return code, capsys.readouterr().err.strip()


def test_missing_shard_is_named(broken, tmp_path, capsys):
    (broken / "params_7.npy").unlink()
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err and "params_7.npy: missing" in err


def test_truncated_shard_is_named_with_what_was_expected(broken, tmp_path, capsys):
    path = broken / "params_3.npy"
    path.write_bytes(path.read_bytes()[:-100])
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err
    assert "params_3.npy: truncated" in err and "float32 values" in err


def test_wrong_shapes_are_named(broken, tmp_path, capsys):
    shapes = json.loads((broken / "params_shapes.json").read_text())
    shapes[5][0] += 1  # block 0's c_proj bias
    (broken / "params_shapes.json").write_text(json.dumps(shapes))
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err
    assert "params_shapes.json: array 5 (block 0 attn.c_proj.bias) has shape [33], expected [32]" in err


def test_shards_that_do_not_add_up_are_reported(broken, tmp_path, capsys):
    np.save(broken / "params_9.npy", np.load(broken / "params_9.npy")[:-7])
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "hold" in err and "params_shapes.json lists" in err


def test_vocabulary_of_another_size_is_named(broken, tmp_path, capsys):
    encoder = json.loads((broken / ENCODER_FILE).read_text())
    smaller = {k: v for k, v in encoder.items() if v < 40000}
    (broken / ENCODER_FILE).write_text(json.dumps(smaller))
    code, err = convert_cli(broken, tmp_path / "out", capsys)
    assert code == 2 and "\n" not in err
    assert f"{ENCODER_FILE}: 40,000 tokens, but the token embedding in params_shapes.json has 40,478 rows" in err
