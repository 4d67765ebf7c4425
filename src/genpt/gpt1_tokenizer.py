"""GPT-1's tokenizer: ftfy, text standardisation, spaCy's English tokenizer, lower case, then `</w>` BPE.

One vocabulary (`encoder_bpe_40000.json`, 40,478 ids; `vocab_40000.bpe`, 40,000 merges), two pipelines:

- `release`: the original code's pipeline, id for id what the slow `OpenAIGPTTokenizer` of `transformers` 4.x
  gives with ftfy and spaCy installed (the tests hold it to transformers 4.46.3). That tokenizer also
  lower-cases the whole text before ftfy and spaCy see it, and reads the text "<unk>" as id 0; both are kept.
- `transformers`: what `transformers` 5.x's `OpenAIGPTTokenizer` does (BERT's normaliser and pre-tokenizer,
  no ftfy or spaCy). It is a plain tokenizer.json, so a plain genpt `Tokenizer`.

The release pipeline runs in `genpt.gpt1_release.GPT1Tokenizer`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers

from genpt import io
from genpt.errors import GenptError
from genpt.gpt1_release import RELEASE, SUFFIX, UNK, GPT1Tokenizer
from genpt.tokenizer import Tokenizer

TRANSFORMERS = "gpt1-transformers"  # beside RELEASE: the kinds recorded in a converted checkpoint's config.json
PIPELINES = {"release": RELEASE, "transformers": TRANSFORMERS}
ENCODER_FILE = "encoder_bpe_40000.json"
MERGES_FILE = "vocab_40000.bpe"
# Replacing this string by itself changes no text: a marker that survives every save and copy of tokenizer.json.
_MARKER = "genpt:gpt1-release-pipeline"


@dataclass
class Vocabulary:
    """GPT-1's BPE: token -> id, and the merges in priority order."""

    encoder: dict[str, int]
    merges: list[tuple[str, str]]


def read_vocabulary(encoder_path: str | Path, merges_path: str | Path) -> Vocabulary:
    """Read `encoder_bpe_40000.json` + `vocab_40000.bpe` (or the same as `vocab.json` + `merges.txt`).

    The merges are read as the original code read them: the first line (a version header) and the last
    (empty when the file ends with a newline) are dropped.
    """
    encoder_path, merges_path = Path(encoder_path), Path(merges_path)
    encoder = io.read_json(encoder_path, "expected the GPT-1 vocabulary (token -> id JSON)")
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise GenptError(f"{encoder_path}: expected a JSON object mapping each token to an integer id")
    if sorted(encoder.values()) != list(range(len(encoder))):
        raise GenptError(f"{encoder_path}: ids must be 0..{len(encoder) - 1}, each once")
    try:
        lines = merges_path.read_text(encoding="utf-8").split("\n")[1:-1]
    except FileNotFoundError:
        raise GenptError(f"{merges_path}: missing; expected the GPT-1 BPE merges (one 'a b' pair a line)") from None
    merges = []
    for number, line in enumerate(lines, 2):
        pair = tuple(line.split())
        if len(pair) != 2:
            raise GenptError(f"{merges_path}, line {number}: expected two symbols separated by a space, got {line!r}")
        merges.append(pair)
    return Vocabulary(encoder, merges)


def find_vocabulary(folder: str | Path) -> Vocabulary:
    """The vocabulary in a release folder (encoder_bpe_40000.json) or a Hugging Face one (vocab.json)."""
    folder = Path(folder)
    for encoder, merges in ((ENCODER_FILE, MERGES_FILE), ("vocab.json", "merges.txt")):
        if (folder / encoder).is_file():
            return read_vocabulary(folder / encoder, folder / merges)
    raise GenptError(f"{folder}: no GPT-1 vocabulary (expected {ENCODER_FILE} + {MERGES_FILE}, "
                     "or vocab.json + merges.txt)")


def _transformers_pipeline(vocab: Vocabulary) -> tokenizers.Tokenizer:
    """The tokenizer transformers 5.x's OpenAIGPTTokenizer builds from this vocabulary, setting for setting."""
    if UNK not in vocab.encoder:
        raise GenptError(f"the vocabulary has no {UNK} token, which GPT-1's BPE maps unknown characters to")
    try:
        bpe = models.BPE(vocab=vocab.encoder, merges=vocab.merges, dropout=None, continuing_subword_prefix="",
                         end_of_word_suffix=SUFFIX, fuse_unk=False, unk_token=UNK)
    except Exception as e:  # the Rust side raises a bare Exception when a merge names an unknown symbol
        raise GenptError(f"the merges do not fit the vocabulary ({e})") from None
    hf = tokenizers.Tokenizer(bpe)
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.BPEDecoder(suffix=SUFFIX)
    # transformers reads "<unk>" in text as the unknown token. genpt never lets text produce a special
    # token, so it is added as a plain one: same ids, and the fine-tuning tokens stay unreachable.
    hf.add_tokens([AddedToken(UNK, special=False, normalized=False)])
    return hf


def transformers_tokenizer(vocab: Vocabulary, added: Sequence[AddedToken] = ()) -> Tokenizer:
    """GPT-1's vocabulary as transformers 5.x tokenizes with it, then `added` tokens, then genpt's special tokens."""
    return Tokenizer.from_hf(_with_added(_transformers_pipeline(vocab), added))


def release_tokenizer(vocab: Vocabulary, added: Sequence[AddedToken] = ()) -> GPT1Tokenizer:
    """GPT-1's vocabulary with the release pipeline (ftfy, standardisation, spaCy), then `added` and genpt's
    special tokens."""
    hf = _with_added(_transformers_pipeline(vocab), added)
    hf.normalizer = normalizers.Sequence([normalizers.Replace(_MARKER, _MARKER), hf.normalizer])
    return GPT1Tokenizer(Tokenizer.from_hf(hf), vocab.merges)


def gpt1_tokenizer(vocab: Vocabulary, pipeline: str = "release",
                   added: Sequence[AddedToken] = ()) -> Tokenizer | GPT1Tokenizer:
    """GPT-1's vocabulary with the `release` or the `transformers` pipeline (see the module docstring)."""
    if pipeline not in PIPELINES:
        raise GenptError(f"tokenizer pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
    return (release_tokenizer if pipeline == "release" else transformers_tokenizer)(vocab, added)


def _with_added(hf: tokenizers.Tokenizer, added: Sequence[AddedToken]) -> tokenizers.Tokenizer:
    """Tokens added after the vocabulary (e.g. by a Hugging Face folder), each at the next id."""
    for token in added:
        if hf.token_to_id(token.content) is None:
            if token.special:
                hf.add_special_tokens([token])
            else:
                hf.add_tokens([token])
    return hf


def is_release(tokenizer: Tokenizer) -> bool:
    """Whether a tokenizer.json carries the marker of the release pipeline."""
    normalizer = json.loads(tokenizer.hf.to_str()).get("normalizer") or {}
    first = (normalizer.get("normalizers") or [{}])[0] if normalizer.get("type") == "Sequence" else {}
    return first.get("type") == "Replace" and first.get("content") == _MARKER


def load(path: str | Path) -> Tokenizer | GPT1Tokenizer:
    """Any genpt tokenizer.json: a `GPT1Tokenizer` where it carries the release marker, else a `Tokenizer`."""
    tokenizer = Tokenizer.load(path)
    return GPT1Tokenizer(tokenizer) if is_release(tokenizer) else tokenizer


def kind(tokenizer: Tokenizer | GPT1Tokenizer) -> str:
    """What a checkpoint's config.json records: gpt1-release, gpt1-transformers, or bpe (genpt's own)."""
    if isinstance(tokenizer, GPT1Tokenizer):
        return RELEASE
    model = json.loads(tokenizer.hf.to_str())["model"]
    return TRANSFORMERS if model.get("end_of_word_suffix") == SUFFIX else "bpe"


__all__ = ["ENCODER_FILE", "MERGES_FILE", "PIPELINES", "RELEASE", "SUFFIX", "TRANSFORMERS", "UNK", "GPT1Tokenizer",
           "Vocabulary", "find_vocabulary", "gpt1_tokenizer", "is_release", "kind", "load", "read_vocabulary",
           "release_tokenizer", "transformers_tokenizer"]
