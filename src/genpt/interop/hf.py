"""Hugging Face `OpenAIGPT*` folders, both ways: config.json, the weights, and the tokenizer files.

genpt's modules carry Hugging Face's names (`tokens_embed`, `h.0.attn.c_attn`, ...), so a tensor maps by
name, less the `transformer.` prefix; only the four projections differ in layout: transformers stores them
as `Conv1D` (in, out), genpt as `nn.Linear` (out, in). transformers' `afn="gelu"` is GPT-1's tanh GELU.

Heads: a genpt language model becomes `OpenAIGPTLMHeadModel`; a fine-tuned classifier (classification or
entailment, classes or a score) becomes `OpenAIGPTForSequenceClassification`, which reads the last token
that is not padding (genpt's extract token, since genpt pads on the right) and has no bias: the head's
bias is moved into the last LayerNorm's, which only that head reads. A multiple-choice model becomes
`OpenAIGPTDoubleHeadsModel` (`mc_token_ids` = the extract positions). A similarity model sums the states of
two orderings before its head, which no `OpenAIGPT*` class can do.

This module never imports `transformers`: it reads and writes the files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genpt import io
from genpt.config import ModelConfig
from genpt.errors import GenptError
from genpt.gpt1_tokenizer import SUFFIX, UNK, Vocabulary, gpt1_tokenizer, read_vocabulary
from genpt.gpt1_tokenizer import kind as tokenizer_kind
from genpt.interop.common import Converted, append_rows, cut_positions
from genpt.pickles import load_tensors
from genpt.tokenizer import SPECIAL_TOKENS, Tokenizer

log = logging.getLogger("genpt")

CONV = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
AFN_TO_HF = {"gelu": "gelu", "relu": "relu", "silu": "silu"}
AFN_FROM_HF = {"gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}
# Tensors transformers may save that genpt does not keep: the causal mask and position ids are buffers.
_BUFFERS = (".attn.bias", "position_ids")
_HEADS = ("multiple_choice_head.", "score.")


# -- reading --------------------------------------------------------------------------------------------


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    data = io.read_json(path, "a Hugging Face model folder holds config.json")
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != "openai-gpt":
        raise GenptError(f"{path}: model_type is {model_type!r}, expected 'openai-gpt' (OpenAIGPT*)")
    return data


def _model_config(data: dict, path: Path) -> ModelConfig:
    afn = data.get("afn", "gelu")
    if afn not in AFN_FROM_HF:
        raise GenptError(f"{path}: afn {afn!r} is not one of {', '.join(AFN_FROM_HF)}")
    try:
        return ModelConfig(vocab_size=int(data.get("vocab_size", 40478)),
                           n_ctx=int(data.get("n_positions", data.get("n_ctx", 512))),
                           n_embd=int(data.get("n_embd", 768)), n_layer=int(data.get("n_layer", 12)),
                           n_head=int(data.get("n_head", 12)), afn=AFN_FROM_HF[afn],
                           embd_pdrop=float(data.get("embd_pdrop", 0.1)),
                           attn_pdrop=float(data.get("attn_pdrop", 0.1)),
                           resid_pdrop=float(data.get("resid_pdrop", 0.1)),
                           layer_norm_epsilon=float(data.get("layer_norm_epsilon", 1e-5)),
                           initializer_range=float(data.get("initializer_range", 0.02)))
    except (TypeError, ValueError) as e:
        raise GenptError(f"{path}: a model setting has the wrong type ({e})") from None


def _read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The tensors of model.safetensors (single or sharded) or pytorch_model.bin, and the file they came from."""
    single, index, legacy = folder / "model.safetensors", folder / "model.safetensors.index.json", \
        folder / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(single), single
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            weights = {}
            for shard in shards:
                weights.update(load_file(folder / shard))
            return weights, index
        if legacy.is_file():
            return load_tensors(legacy), legacy
    except FileNotFoundError as e:
        raise GenptError(f"{e.filename}: missing (listed in {index.name})") from None
    except (SafetensorError, OSError, RuntimeError, KeyError, json.JSONDecodeError) as e:
        raise GenptError(f"{folder}: unreadable weights ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    raise GenptError(f"{folder}: no weights (expected model.safetensors or pytorch_model.bin)")


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Tensor shapes in transformers' layout (Conv1D weights are (in, out))."""
    e, inner = config.n_embd, config.inner_dim
    shapes = {"tokens_embed.weight": (config.vocab_size, e), "positions_embed.weight": (config.n_ctx, e)}
    block = {"attn.c_attn.weight": (e, 3 * e), "attn.c_attn.bias": (3 * e,), "attn.c_proj.weight": (e, e),
             "attn.c_proj.bias": (e,), "ln_1.weight": (e,), "ln_1.bias": (e,), "mlp.c_fc.weight": (e, inner),
             "mlp.c_fc.bias": (inner,), "mlp.c_proj.weight": (inner, e), "mlp.c_proj.bias": (e,),
             "ln_2.weight": (e,), "ln_2.bias": (e,)}
    for i in range(config.n_layer):
        shapes.update({f"h.{i}.{k}": v for k, v in block.items()})
    return shapes


def _genpt_state(weights: dict[str, torch.Tensor], config: ModelConfig, path: Path) -> dict[str, torch.Tensor]:
    expected = _expected_shapes(config)
    state, dropped = {}, []
    for key, tensor in weights.items():
        name = key.removeprefix("transformer.")
        if name in expected:
            if tuple(tensor.shape) != expected[name]:
                raise GenptError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, expected {expected[name]} "
                                 "from config.json")
            tensor = tensor.float()
            state[name] = tensor.t().contiguous() if name.split(".", 2)[-1] in CONV else tensor
        elif name == "lm_head.weight":
            tied = weights.get("transformer.tokens_embed.weight", weights.get("tokens_embed.weight"))
            if tied is not None and not torch.equal(tensor, tied):
                raise GenptError(f"{path}: lm_head.weight differs from tokens_embed.weight; genpt ties them, as GPT-1")
        elif name.endswith(_BUFFERS):
            continue
        elif name.startswith(_HEADS):
            dropped.append(key)
        else:
            raise GenptError(f"{path}: unexpected tensor {key} for an OpenAIGPT model")
    missing = [k for k in expected if k not in state]
    if missing:
        raise GenptError(f"{path}: lacks tensor {missing[0]} (shape {expected[missing[0]]})"
                         + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if dropped:
        log.warning("%s: the task head (%s) is not imported; the transformer is", path, ", ".join(dropped))
    return state


def _added_tokens(data: dict, base: int) -> list:
    """A tokenizer.json's added tokens past the BPE vocabulary, in id order, checked to follow it."""
    from tokenizers import AddedToken

    extra = sorted((t for t in data.get("added_tokens", []) if t["id"] >= base), key=lambda t: t["id"])
    for i, t in enumerate(extra):
        if t["id"] != base + i:
            raise GenptError(f"added token {t['content']!r} has id {t['id']}, expected {base + i} (ids must follow "
                             "the vocabulary without gaps)")
    return [AddedToken(t["content"], special=t.get("special", False), normalized=t.get("normalized", False))
            for t in extra]


def read_tokenizer(folder: str | Path, pipeline: str | None = None):
    """The tokenizer of a Hugging Face folder, with genpt's special tokens appended.

    An `OpenAIGPTTokenizer` (tokenizer.json, or vocab.json + merges.txt) gets GPT-1's `transformers` pipeline
    by default, since transformers rebuilds that pipeline from the vocabulary whatever the file says; any
    other tokenizer.json is taken as it is.
    """
    import tokenizers

    folder = Path(folder)
    config_path = folder / "tokenizer_config.json"
    tokenizer_class = io.read_json(config_path).get("tokenizer_class") or "" if config_path.is_file() else ""
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tokenizers.Tokenizer.from_str(json.dumps(data))
        except Exception as e:  # the Rust side raises a bare Exception for any parse failure
            raise GenptError(f"{path}: not a Hugging Face tokenizer.json ({str(e).splitlines()[0]})") from None
        model = data.get("model", {})
        gpt1 = model.get("type") == "BPE" and model.get("end_of_word_suffix") == SUFFIX
        if tokenizer_class.startswith("OpenAIGPTTokenizer") or (gpt1 and not tokenizer_class) or pipeline:
            if not gpt1:
                raise GenptError(f"{path}: not a GPT-1 style BPE (end_of_word_suffix {SUFFIX!r}), so it has no "
                                 f"{pipeline or 'GPT-1'} pipeline")
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            vocab = Vocabulary(model["vocab"], merges)
            return gpt1_tokenizer(vocab, pipeline or "transformers", _added_tokens(data, len(vocab.encoder)))
        return Tokenizer.from_hf(tokenizers.Tokenizer.from_str(json.dumps(data)))
    if (folder / "vocab.json").is_file() or (folder / "merges.txt").is_file():
        vocab = read_vocabulary(folder / "vocab.json", folder / "merges.txt")
        added = folder / "added_tokens.json"
        extra = io.read_json(added) if added.is_file() else {}
        data = {"added_tokens": [{"id": i, "content": c, "special": True} for c, i in extra.items()]}
        return gpt1_tokenizer(vocab, pipeline or "transformers", _added_tokens(data, len(vocab.encoder)))
    raise GenptError(f"{folder}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt)")


def read_hf(folder: str | Path, *, n_ctx: int | None = None, pipeline: str | None = None, seed: int = 0) -> Converted:
    """A Hugging Face OpenAIGPT folder as a genpt language model (a task head in it is left out)."""
    folder = Path(folder)
    data = _read_config(folder)
    config = _model_config(data, folder / "config.json")
    weights, path = _read_weights(folder)
    state = _genpt_state(weights, config, path)
    tokenizer = read_tokenizer(folder, pipeline)
    rows = state["tokens_embed.weight"].size(0)
    if rows > tokenizer.vocab_size:
        raise GenptError(f"{path}: tokens_embed has {rows:,} rows but the tokenizer has {tokenizer.vocab_size:,} "
                         "ids (with genpt's special tokens)")
    state["tokens_embed.weight"] = append_rows(state["tokens_embed.weight"], tokenizer.vocab_size, seed)
    config.vocab_size = tokenizer.vocab_size
    cut_positions(state, config, n_ctx, folder / "config.json")
    return Converted(config, state, tokenizer, source=f"hf:{folder}")


# -- writing --------------------------------------------------------------------------------------------


def _hf_config(converted: Converted, architecture: str) -> dict:
    c = converted.config
    if c.afn not in AFN_TO_HF:
        raise GenptError(f"model.afn {c.afn!r} has no OpenAIGPT equivalent (its 'gelu' is the tanh form genpt calls "
                         "'gelu'; it has no exact GELU)")
    if c.inner_dim != 4 * c.n_embd:
        raise GenptError(f"model.n_inner {c.n_inner}: OpenAIGPT's MLP is always 4 x n_embd = {4 * c.n_embd} wide")
    tokenizer = converted.tokenizer
    return {
        "architectures": [architecture], "model_type": "openai-gpt", "vocab_size": c.vocab_size,
        "n_positions": c.n_ctx, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
        "afn": AFN_TO_HF[c.afn], "embd_pdrop": c.embd_pdrop, "attn_pdrop": c.attn_pdrop,
        "resid_pdrop": c.resid_pdrop, "layer_norm_epsilon": c.layer_norm_epsilon,
        "initializer_range": c.initializer_range, "summary_type": "cls_index", "summary_use_proj": True,
        "summary_activation": None, "summary_proj_to_labels": True,
        "summary_first_dropout": (converted.head or {}).get("clf_pdrop", 0.1), "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_id, "eos_token_id": tokenizer.eot_id, "dtype": "float32",
    }


def _hf_weights(converted: Converted) -> dict[str, torch.Tensor]:
    weights = {}
    for name, tensor in converted.state.items():
        tensor = tensor.detach().float().cpu()
        weights[f"transformer.{name}"] = (tensor.t() if name.split(".", 2)[-1] in CONV else tensor).contiguous()
    return weights


def _head(converted: Converted, weights: dict[str, torch.Tensor], config: dict) -> str:
    """Put a fine-tuned model's head where transformers has one; returns the architecture it fits."""
    task = converted.task
    if task is None:
        return "OpenAIGPTLMHeadModel"
    weight, bias = converted.head_state["linear.weight"].float(), converted.head_state["linear.bias"].float()
    if task["transform"] == "similarity":
        raise GenptError(f"{task['name']}: a similarity head adds the extract states of both orderings (A;B and B;A) "
                         "before its linear layer; no transformers OpenAIGPT class does that, so it cannot be exported")
    if task["transform"] == "multiple_choice":
        weights["multiple_choice_head.summary.weight"] = weight.contiguous()
        weights["multiple_choice_head.summary.bias"] = bias.contiguous()
        config["num_labels"] = 1
        return "OpenAIGPTDoubleHeadsModel"
    # OpenAIGPTForSequenceClassification's score layer has no bias: W h + b = W (h + W⁺ b) when W has full row
    # rank, and h is the last LayerNorm's output, so b moves into that LayerNorm's bias.
    last = f"transformer.h.{converted.config.n_layer - 1}.ln_2.bias"
    shift = torch.linalg.pinv(weight.double()) @ bias.double()
    if (weight.double() @ shift - bias.double()).abs().max() > 1e-6 * max(1.0, bias.abs().max().item()):
        raise GenptError(f"{task['name']}: the head's bias cannot be moved into the last LayerNorm (its weight "
                         "rows are linearly dependent), and OpenAIGPTForSequenceClassification has no bias")
    weights[last] = (weights[last].double() + shift).float()
    weights["score.weight"] = weight.contiguous()
    n_out = weight.size(0)
    names = task.get("label_names") or [str(i) for i in range(n_out)]
    config.update(num_labels=n_out, problem_type="regression" if task["target"] == "score" else
                  "single_label_classification")
    if task["target"] != "score":
        config.update(id2label={str(i): n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)})
    return "OpenAIGPTForSequenceClassification"


def _write_tokenizer(tokenizer, folder: Path, n_ctx: int) -> None:
    kind = tokenizer_kind(tokenizer)
    data = json.loads(tokenizer.to_str())
    if kind == "bpe":  # genpt's own byte-level BPE: the file is the tokenizer
        for t in data["added_tokens"]:
            t["special"] = True
        (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": n_ctx,
            "eos_token": SPECIAL_TOKENS["end_of_text"], "pad_token": SPECIAL_TOKENS["pad"]}, indent=2))
        return
    # GPT-1's vocabulary: vocab.json + merges.txt (transformers 4.x's slow tokenizer runs the release pipeline
    # on them when ftfy and spaCy are installed), and the tokenizer.json transformers 5.x writes.
    vocab = data["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    added = [t for t in data["added_tokens"] if t["content"] != UNK]
    (folder / "added_tokens.json").write_text(json.dumps({t["content"]: t["id"] for t in added}, ensure_ascii=False))
    for t in data["added_tokens"]:
        t["special"] = True
    data["normalizer"] = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                          "strip_accents": None, "lowercase": True}  # without genpt's release marker
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "OpenAIGPTTokenizer", "unk_token": UNK, "model_max_length": n_ctx,
        "eos_token": SPECIAL_TOKENS["end_of_text"], "pad_token": SPECIAL_TOKENS["pad"],
        "additional_special_tokens": [t["content"] for t in added
                                      if t["content"] not in (SPECIAL_TOKENS["end_of_text"], SPECIAL_TOKENS["pad"])],
    }, indent=2, ensure_ascii=False))


def write_hf(converted: Converted, output: str | Path) -> Path:
    """Write a Hugging Face folder that `OpenAIGPTLMHeadModel.from_pretrained` (or the head's class) loads."""
    output = Path(output)
    config = _hf_config(converted, "OpenAIGPTLMHeadModel")
    weights = _hf_weights(converted)
    config["architectures"] = [_head(converted, weights, config)]
    with io.atomic_dir(output) as tmp:
        save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        _write_tokenizer(converted.tokenizer, tmp, converted.config.n_ctx)
    return output
