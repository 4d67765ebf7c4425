"""A tiktoken encoder that gives the same ids as a byte-level BPE of Hugging Face `tokenizers`, where it can.

tiktoken splits text with a regex and merges bytes by the rank of the merged token; `tokenizers` merges by
the rank of the merge rule. Fed the same vocabulary, the two agree id for id when

1. the text is split alike: no normalizer, the ByteLevel pre-tokenizer with its own regex (`PATTERN`, used
   verbatim as tiktoken's pat_str), no prefix space, no added tokens that text can produce (special tokens
   are never parsed from text: `encode_special_tokens`), no truncation or padding;
2. each merged token is made by exactly one merge rule, from byte symbols or tokens of earlier rules,
   and token ids rise with the rules' order: a token's id then orders merges as its rule's rank does;
3. every merged token is what `tokenizers` itself makes of that token's own bytes.

3 is needed because tiktoken takes a piece that is a whole token as that token at once, and merges any two
neighbours whose bytes spell a token, not only the pair of the token's rule: with the rules (b c), (a b),
(ab c), `tokenizers` encodes "abc" as a + bc, tiktoken as abc. With 2 and 3 such a pair (p, q), spelling
token t but not t's rule, never arises where `tokenizers` has been: its run that makes t from t's bytes
goes as the runs that made p and q did, on either side of the p|q border, until it first merges across
the border, and that merge was open to the runs that made p and q as well. So at each step both merge
the same pair.

`tokenizers`' trainer gives all of this; an imported or hand-made vocabulary may not. `mergeable_ranks`
checks it and raises `NotExact` with the reason, and genpt's Tokenizer then keeps using `tokenizers`.
The regex engines differ (Oniguruma there, fancy-regex here); tests/test_fast_bpe.py holds their
character classes to agree on every code point of Unicode's planes 0-3 and 14.
"""

from __future__ import annotations

import json
import logging
import re

import tiktoken
import tokenizers

log = logging.getLogger(__name__)

# The split of `tokenizers`' ByteLevel pre-tokenizer (use_regex=True), character for character.
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Whitespace after a non-space character. Python's \s (str.isspace) holds every character PATTERN's \s
# does (and U+001C..U+001F besides), so \S here is never \s there.
_CUT = re.compile(r"(?<=\S)\s")


class NotExact(Exception):
    """The tokenizer is one tiktoken would not reproduce id for id; the message says why."""


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to the printable character that stands for it in a byte-level vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def mergeable_ranks(hf: tokenizers.Tokenizer) -> dict[bytes, int]:
    """tiktoken's `mergeable_ranks` (token bytes -> id) for `hf`, or NotExact when ids could differ."""
    spec = json.loads(hf.to_str())
    _check_pipeline(hf, spec)
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    to_byte = {c: b for b, c in byte_to_unicode().items()}
    missing = [c for c in to_byte if c not in vocab]
    if missing:
        raise NotExact(f"the vocabulary lacks {len(missing)} of the 256 byte symbols (e.g. {missing[0]!r})")
    ranks = {bytes([b]): vocab[c] for c, b in to_byte.items()}
    made: list[str] = []  # merged tokens, in rule order
    known = set(to_byte)  # what a rule may merge: byte symbols and the tokens of earlier rules
    previous = -1
    for number, rule in enumerate(model["merges"]):
        left, right = rule.split(" ") if isinstance(rule, str) else rule
        token = left + right
        if left not in known or right not in known:
            raise NotExact(f"merge rule {number} ({left!r}, {right!r}) merges a token that no earlier rule made")
        if token in known:
            raise NotExact(f"token {token!r} is made by more than one merge rule (again by rule {number})")
        if vocab.get(token, -1) <= previous:
            raise NotExact(f"token ids do not rise with the merge rules: rule {number} makes {token!r} "
                           f"(id {vocab.get(token)}) after a token of id {previous}")
        previous = ranks[bytes(to_byte[c] for c in token)] = vocab[token]
        known.add(token)
        made.append(token)
    if len(set(ranks.values())) < len(ranks):
        raise NotExact("two of its tokens share an id")
    _check_canonical(hf, vocab, made)
    return ranks


def build_encoding(hf: tokenizers.Tokenizer) -> tiktoken.Encoding | None:
    """A tiktoken Encoding that encodes text exactly as `hf` does, or None where that cannot be promised.

    Special tokens are left out: text that spells one encodes as plain text, as `hf` does with
    `encode_special_tokens` on.
    """
    try:
        ranks = mergeable_ranks(hf)
    except NotExact as e:
        log.debug("tiktoken fast path off, encoding with tokenizers: %s", e)
        return None
    return tiktoken.Encoding("genpt-byte-level-bpe", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={})


def _check_pipeline(hf: tokenizers.Tokenizer, spec: dict) -> None:
    """Condition 1 of the module docstring: text reaches the BPE in the same pieces."""
    if spec.get("normalizer") is not None:
        raise NotExact(f"it has a normalizer ({spec['normalizer'].get('type')})")
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        raise NotExact(f"its pre-tokenizer is not ByteLevel(add_prefix_space=False, use_regex=True): {pre}")
    post = spec.get("post_processor")
    if post is not None and post.get("type") != "ByteLevel":  # ByteLevel only trims offsets
        raise NotExact(f"it has a {post.get('type')} post-processor")
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        raise NotExact("it truncates or pads")
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise NotExact(f"its model is {model.get('type')}, not BPE")
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise NotExact("its BPE has dropout, a continuing-subword prefix or an end-of-word suffix")
    if model.get("ignore_merges"):
        raise NotExact("its BPE has ignore_merges set")
    plain = [t["content"] for t in spec.get("added_tokens", []) if not t.get("special")]
    if plain:
        raise NotExact(f"text can produce its added tokens {plain[:3]}")
    if spec.get("added_tokens") and not hf.encode_special_tokens:
        raise NotExact("encode_special_tokens is off, so text can produce its special tokens")


def _check_canonical(hf: tokenizers.Tokenizer, vocab: dict[str, int], made: list[str]) -> None:
    """Condition 3 of the module docstring: each merged token's own bytes encode to that token alone."""
    bpe = hf.model
    for token in made:
        pieces = bpe.tokenize(token)
        if len(pieces) != 1 or pieces[0].id != vocab[token]:
            raise NotExact(f"token {token!r} is not what its own bytes encode to "
                           f"({[p.value for p in pieces]})")


def cut_text(text: str, size: int) -> list[str]:
    """`text` in pieces of about `size` characters, cut only where PATTERN splits it anyway.

    Each cut falls just before whitespace that follows a non-space character: no alternative of PATTERN
    matches both, and the text after the cut is split afresh there either way, so the pieces encode to
    the ids of the whole text, in tiktoken and in `tokenizers` alike. A stretch without whitespace is
    not cut.
    """
    pieces = []
    start = 0
    while len(text) - start > size and (cut := _CUT.search(text, start + size)):
        pieces.append(text[start : cut.start()])
        start = cut.start()
    pieces.append(text[start:])
    return pieces
