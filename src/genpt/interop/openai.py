"""The original GPT-1 release: `params_shapes.json`, `params_0.npy` ... `params_9.npy` and the vocabulary.

The shards hold the TensorFlow graph's variables flattened and concatenated in graph order, cut into 10
files. Array 0 is the 512 positions, array 1 the 40,478 token embeddings, then 12 arrays per block:

    c_attn w (1, n_embd, 3 n_embd)  c_attn b  attn c_proj w (1, n_embd, n_embd)  c_proj b  ln_1 g  ln_1 b
    c_fc w (1, n_embd, 4 n_embd)    c_fc b    mlp c_proj w (1, 4 n_embd, n_embd)  c_proj b  ln_2 g  ln_2 b

The weights are width-1 convolutions stored (1, in, out), the transpose of `nn.Linear`'s (out, in).
The folder also holds `encoder_bpe_40000.json` and `vocab_40000.bpe`. The number of heads is not
recorded anywhere; GPT-1 has 12.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from genpt import io
from genpt.config import ModelConfig
from genpt.errors import GenptError
from genpt.gpt1_tokenizer import ENCODER_FILE, MERGES_FILE, gpt1_tokenizer, read_vocabulary
from genpt.gpt1_tokenizer import kind as tokenizer_kind
from genpt.interop.common import Converted, append_rows, cut_positions

SHAPES_FILE = "params_shapes.json"
SHARDS = 10
# genpt's name for each array of a block, in graph order; True where the array is a convolution weight.
BLOCK = (("attn.c_attn.weight", True), ("attn.c_attn.bias", False), ("attn.c_proj.weight", True),
         ("attn.c_proj.bias", False), ("ln_1.weight", False), ("ln_1.bias", False), ("mlp.c_fc.weight", True),
         ("mlp.c_fc.bias", False), ("mlp.c_proj.weight", True), ("mlp.c_proj.bias", False),
         ("ln_2.weight", False), ("ln_2.bias", False))


def shard_name(i: int) -> str:
    return f"params_{i}.npy"


def release_shapes(config: ModelConfig, n_vocab: int) -> list[list[int]]:
    """The shapes params_shapes.json lists for a model of this shape with `n_vocab` BPE tokens."""
    e, inner = config.n_embd, config.inner_dim
    block = [[1, e, 3 * e], [3 * e], [1, e, e], [e], [e], [e], [1, e, inner], [inner], [1, inner, e], [e], [e], [e]]
    return [[config.n_ctx, e], [n_vocab, e], *block * config.n_layer]


def to_release(state: dict[str, torch.Tensor], n_layer: int, n_vocab: int) -> list[torch.Tensor]:
    """A genpt model's tensors as the release's arrays, in graph order (meta tensors give the shapes only).

    Only the first `n_vocab` token embeddings are kept: the release has no rows for special tokens.
    """
    arrays = [state["positions_embed.weight"], state["tokens_embed.weight"][:n_vocab]]
    for i in range(n_layer):
        for name, conv in BLOCK:
            t = state[f"h.{i}.{name}"]
            arrays.append(t.t().unsqueeze(0) if conv else t)
    return arrays


def from_release(arrays: list[np.ndarray], n_layer: int) -> dict[str, torch.Tensor]:
    """The release's arrays (graph order) as genpt tensor names and layouts; shares their memory where it can."""
    state = {"positions_embed.weight": torch.from_numpy(arrays[0]), "tokens_embed.weight": torch.from_numpy(arrays[1])}
    it = iter(arrays[2:])
    for i in range(n_layer):
        for name, conv in BLOCK:
            a = torch.from_numpy(next(it))
            state[f"h.{i}.{name}"] = a[0].t().contiguous() if conv else a
    return state


def _read_shapes(folder: Path) -> list[list[int]]:
    path = folder / SHAPES_FILE
    shapes = io.read_json(path, f"an original GPT-1 release folder holds {SHAPES_FILE} and "
                                f"{shard_name(0)} ... {shard_name(SHARDS - 1)}")
    ok = isinstance(shapes, list) and all(isinstance(s, list) and all(isinstance(d, int) and d > 0 for d in s)
                                          for s in shapes)
    if not ok or len(shapes) < 2 or len(shapes[0]) != 2 or (len(shapes) - 2) % len(BLOCK):
        raise GenptError(f"{path}: expected a list of shapes: positions [n_ctx, n_embd], tokens [n_vocab, n_embd], "
                         f"then {len(BLOCK)} arrays per block")
    return shapes


def _model_shape(folder: Path, shapes: list[list[int]], n_head: int) -> tuple[ModelConfig, int]:
    """The model's shape from the arrays' shapes, checked against the layout GPT-1's graph has."""
    n_ctx, n_embd = shapes[0]
    n_layer = (len(shapes) - 2) // len(BLOCK)
    inner = shapes[8][2] if n_layer else 4 * n_embd
    config = ModelConfig(vocab_size=shapes[1][0], n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                         n_inner=0 if inner == 4 * n_embd else inner)
    expected = release_shapes(config, shapes[1][0])
    for i, (got, want) in enumerate(zip(shapes, expected, strict=True)):
        if got != want:
            where = "positions" if i == 0 else "tokens" if i == 1 else \
                f"block {(i - 2) // len(BLOCK)} {BLOCK[(i - 2) % len(BLOCK)][0]}"
            raise GenptError(f"{folder / SHAPES_FILE}: array {i} ({where}) has shape {got}, expected {want} "
                             f"for n_embd {n_embd}")
    if n_embd % n_head:
        raise GenptError(f"{folder}: n_embd {n_embd} is not divisible by {n_head} heads; pass the right --n-head")
    return config, shapes[1][0]


def _shard_length(path: Path) -> int:
    """Values in one shard, from its header, after checking the file holds them all (names what is wrong)."""
    try:
        with path.open("rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            header = f.tell()
    except FileNotFoundError:
        raise GenptError(f"{path}: missing; the release is cut into {shard_name(0)} ... {shard_name(SHARDS - 1)}") \
            from None
    except (ValueError, OSError, EOFError) as e:
        raise GenptError(f"{path}: not a NumPy .npy file ({e})") from None
    if dtype != np.float32 or len(shape) != 1:
        raise GenptError(f"{path}: expected a flat float32 array, found {dtype} of shape {shape}")
    have, need = path.stat().st_size - header, shape[0] * 4
    if have < need:
        raise GenptError(f"{path}: truncated: {have:,} bytes of data, its header promises {shape[0]:,} float32 "
                         f"values ({need:,} bytes)")
    return shape[0]


def read_release_arrays(folder: str | Path) -> tuple[list[list[int]], list[np.ndarray]]:
    """The arrays of a release folder, in graph order and their real shapes (as memory maps)."""
    folder = Path(folder)
    shapes = _read_shapes(folder)
    lengths = [_shard_length(folder / shard_name(i)) for i in range(SHARDS)]
    total, need = sum(lengths), sum(math.prod(s) for s in shapes)
    if total != need:
        raise GenptError(f"{folder}: {shard_name(0)} ... {shard_name(SHARDS - 1)} hold {total:,} values together, "
                         f"{SHAPES_FILE} lists {need:,}")
    flat = np.concatenate([np.load(folder / shard_name(i), mmap_mode="r") for i in range(SHARDS)])  # a writable copy
    offsets = np.cumsum([math.prod(s) for s in shapes])[:-1]
    return shapes, [a.reshape(s) for a, s in zip(np.split(flat, offsets), shapes, strict=True)]


def read_release(folder: str | Path, *, n_head: int = 12, n_ctx: int | None = None, pipeline: str = "release",
                 seed: int = 0) -> Converted:
    """A release folder as a genpt model: its tensors, shape and tokenizer (`genpt.interop.Converted`).

    The special tokens get new embeddings drawn from N(0, 0.02) (seeded by `seed`), as the original
    fine-tuning code drew them; `n_ctx` keeps only the first positions.
    """
    folder = Path(folder)
    shapes = _read_shapes(folder)
    config, n_vocab = _model_shape(folder, shapes, n_head)
    vocab = read_vocabulary(folder / ENCODER_FILE, folder / MERGES_FILE)
    if len(vocab.encoder) != n_vocab:
        raise GenptError(f"{folder / ENCODER_FILE}: {len(vocab.encoder):,} tokens, but the token embedding in "
                         f"{SHAPES_FILE} has {n_vocab:,} rows")
    tokenizer = gpt1_tokenizer(vocab, pipeline)
    _, arrays = read_release_arrays(folder)
    state = from_release(arrays, config.n_layer)
    config.vocab_size = tokenizer.vocab_size
    state["tokens_embed.weight"] = append_rows(state["tokens_embed.weight"], tokenizer.vocab_size, seed)
    cut_positions(state, config, n_ctx, folder / SHAPES_FILE)
    return Converted(config, state, tokenizer, source=f"openai:{folder}")


def write_release(converted: Converted, output: str | Path) -> Path:
    """Write a language model over GPT-1's vocabulary in the release layout, whole or not at all.

    The arrays are cut into 10 shards as the release's are; the special tokens' embeddings are left out, as
    the release has none, and so is a fine-tuned model's head, which the layout has no place for.
    """
    if tokenizer_kind(converted.tokenizer) == "bpe":
        raise GenptError(f"{converted.source}: the release layout holds GPT-1's vocabulary only, and this model's "
                         "tokenizer is genpt's own BPE; export it with --to hf or keep it as genpt")
    if converted.task is not None:
        raise GenptError(f"{converted.source}: a fine-tuned model's task head has no place in the release layout; "
                         "export it with --to hf")
    model = json.loads(converted.tokenizer.to_str())["model"]
    vocab = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    arrays = [t.detach().float().cpu().numpy() for t in to_release(converted.state, converted.config.n_layer,
                                                                    len(vocab))]
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    with io.atomic_dir(output) as tmp:
        (tmp / SHAPES_FILE).write_text(json.dumps([list(a.shape) for a in arrays]))
        for i, part in enumerate(np.array_split(flat, SHARDS)):
            np.save(tmp / shard_name(i), part)
        (tmp / ENCODER_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (tmp / MERGES_FILE).write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    return Path(output)
