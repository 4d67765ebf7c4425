"""GPT-1's release pipeline re-implemented: ftfy, the text standardisation and spaCy's English tokenizer, then
the `</w>` BPE, id for id what the original code gives (tests/test_gpt1_tokenizer.py holds it to them).

The release pipeline cannot live in a tokenizer.json (ftfy and spaCy's rules are Python), so `GPT1Tokenizer`
runs them around the BPE of Hugging Face `tokenizers`, with caches: spaCy tokenizes every space-separated
span on its own (its own span cache relies on that), so a span seen before costs one dict look-up. Its
tokenizer.json is the `transformers` pipeline's plus a no-op marker normaliser, which
`genpt.gpt1_tokenizer.load` reads to pick this class; any other reader of the file gets the
transformers 5.x tokenization of the same vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import tokenizers

from genpt.errors import GenptError
from genpt.tokenizer import Tokenizer

RELEASE = "gpt1-release"  # the kind recorded in a converted checkpoint's config.json
UNK = "<unk>"
SUFFIX = "</w>"


# ASCII that none of ftfy's fixes changes: no '&' (HTML entities), ESC (terminal codes), CR (line breaks)
# or control characters. Most lines of English are like this, and ftfy is the slowest step after spaCy.
_FTFY_CLEAN = re.compile(r"[\t\n\x20-\x25\x27-\x7e]*")
# ... and with Latin-1 letters, dashes, ellipses and curly quotes, which books are full of: of ftfy's fixes
# only the un-curling of quotes and the mojibake repair can change them, and the repair starts only on text
# that ftfy's own `is_bad` flags.
_FTFY_LATIN = re.compile(r"[\t\n\x20-\x25\x27-\x7e\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
                         r"\u2013\u2014\u2018-\u201f\u2026]*")


def fix_text(text: str) -> str:
    """`ftfy.fix_text(text)` with its defaults, skipping the work on lines it would leave as they are.

    ftfy fixes a text line by line and stops unescaping HTML for good once a line holds '<'; both are
    replayed here, so the result is ftfy's own (the tests compare them).
    """
    if _FTFY_CLEAN.fullmatch(text):
        return text
    import ftfy
    from ftfy.badness import is_bad
    from ftfy.fixes import uncurl_quotes

    config = ftfy.TextFixerConfig(explain=False)
    out = []
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        end = min(end, pos + config.max_decode_length)
        segment = text[pos:end]
        pos = end
        if config.unescape_html == "auto" and "<" in segment:
            config = config._replace(unescape_html=False)
        if _FTFY_CLEAN.fullmatch(segment):
            out.append(segment)
            continue
        if _FTFY_LATIN.fullmatch(segment) and not is_bad(segment):
            # ftfy's first pass un-curls the quotes; its second finds nothing more unless that text looks bad
            fixed = uncurl_quotes(segment)
            if fixed == segment or not is_bad(fixed):
                out.append(fixed)
                continue
        out.append(ftfy.fix_and_explain(segment, config)[0])
    return "".join(out)


_PUNCT_RUNS = r"""-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\\+|/+|\*+|\[+|\]+|}+|{+|\|+|_+"""
# Words first, as most chunks are; the three kinds of run never start at the same character.
_CHUNKS = re.compile(r"""[^\s\-~!";?+,)(\\/*\[\]}{|_]+|[^\S\n]*\n\s*|""" + _PUNCT_RUNS)


def standardized_chunks(text: str) -> list[str]:
    """The release's `text_standardize(text).split(" ")` in one regex pass, except that each '\n' comes as the
    whitespace run it stands for.

    The standardised text is runs of non-space characters (each run of one punctuation mark apart) separated
    by ' ' or ' \n ', so those runs and the newline runs, less any at either end, are its pieces. These are
    also the spans that spaCy tokenizes one by one, a newline run being its span '\n '.
    """
    for a, b in (("—", "-"), ("–", "-"), ("―", "-"), ("…", "..."), ("´", "'")):
        text = text.replace(a, b)
    chunks = _CHUNKS.findall(text)
    if chunks and chunks[-1][0].isspace():
        chunks.pop()
    if chunks and chunks[0][0].isspace():
        del chunks[0]
    return chunks


class _Off:
    """An affix search that finds nothing until switched on (see `_affix_stage`)."""

    def __init__(self, search, empty):
        self.search, self.empty, self.on = search, empty, False

    def __call__(self, text: str):
        return self.search(text) if self.on else self.empty


def _affix_stage(tokenizer):
    """A copy of a spaCy tokenizer that stops before its last step, and a regex of the rules that step uses.

    spaCy tokenizes each span alone (prefixes, suffixes, infixes, special cases), then a phrase matcher
    over the whole text re-applies special cases that contain punctuation. Only that last step looks
    across spans. It gets a special case's pattern when the rule is added and an affix search finds
    something in it: here the searches are switched off while the rules load, so the copy has none.
    """
    from spacy.tokenizer import Tokenizer as SpacyTokenizer

    searches = [_Off(tokenizer.prefix_search, None), _Off(tokenizer.suffix_search, None),
                _Off(tokenizer.infix_finditer, ())]
    copy = SpacyTokenizer(tokenizer.vocab, rules=tokenizer.rules, prefix_search=searches[0],
                          suffix_search=searches[1], infix_finditer=searches[2], token_match=tokenizer.token_match,
                          url_match=tokenizer.url_match, faster_heuristics=tokenizer.faster_heuristics)
    for search in searches:
        search.on = True
    matched = [rule for rule in tokenizer.rules if tokenizer.find_prefix(rule) or tokenizer.find_suffix(rule)
               or tokenizer.find_infix(rule) or " " in rule or not tokenizer.faster_heuristics]
    return copy, re.compile("|".join(re.escape(rule) for rule in sorted(matched, key=len, reverse=True)))


class GPT1Tokenizer:
    """The release pipeline with the interface of `genpt.tokenizer.Tokenizer` (encode, decode, special ids, ...).

    `file` is the tokenizer.json it is saved as: the vocabulary, the special tokens and the marker.
    """

    kind = RELEASE

    def __init__(self, file: Tokenizer, merges: list[tuple[str, str]] | None = None):
        try:
            import ftfy  # noqa: F401  (checked here, so that a missing package is reported at load time)
            from spacy.lang.en import English
        except ImportError as e:
            raise GenptError(f"GPT-1's release tokenizer needs ftfy and spaCy ({e.name} is missing): "
                             "pip install ftfy==6.3.1 spacy==3.8.18") from None
        self.file = file
        nlp = English()  # a blank pipeline: the tokenizer's rules, no model to download
        # Lexical attributes (shape, like_num, ...) are computed for every new word and never read here;
        # skipping them halves the cost of a new word and changes no token.
        nlp.vocab.lex_attr_getters = {}
        self._spacy = nlp.tokenizer
        self._affixes, self._matcher_rules = _affix_stage(nlp.tokenizer)
        self._rules = set(nlp.tokenizer.rules)  # spaCy's special cases: "gonna" -> "gon" "na", ...
        self._context: set[str] = set()  # spans that must be tokenized with their neighbours
        self._bpe = file.hf.model
        self._unk = file.hf.token_to_id(UNK)
        self._spans: dict[str, tuple[int, ...]] = {}
        self._words: dict[str, tuple[int, ...]] = {}
        # for _release_bpe_ids: read from the file when first needed unless given
        self._ranks = {tuple(m): r for r, m in enumerate(merges)} if merges is not None else None
        self._encoder: dict[str, int] = {}

    # -- encoding -------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        # transformers 4.x lower-cases each character (so a final sigma stays σ) before splitting the
        # text at "<unk>", and only then runs the release pipeline on each piece.
        text = text.replace("\u03a3", "\u03c3").lower()
        ids: list[int] = []
        for i, piece in enumerate(text.split(UNK)):
            if i:
                ids.append(self._unk)
            if piece:
                self._encode_piece(piece, ids)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def _encode_piece(self, piece: str, out: list[int]) -> None:
        if len(self._spans) > 1_000_000:  # bounded: a stream of made-up strings must not fill the memory
            self._spans.clear()
            self._words.clear()
        chunks = standardized_chunks(fix_text(piece))
        start = len(out)
        get = self._spans.get
        for chunk in chunks:
            ids = get(chunk)
            out.extend(self._learn(chunk) if ids is None else ids)
        if len(chunks) > 1 and self._context and not self._context.isdisjoint(chunks):
            # A span whose tokens spaCy's phrase matcher changed may come out otherwise beside its
            # neighbours (a longer match across them can shadow that one): tokenize the text whole.
            del out[start:]
            text = " ".join("\n" if chunk[0].isspace() else chunk for chunk in chunks)
            out.extend(i for token in self._spacy(text) for i in self._word(token.text.lower()))

    def _learn(self, chunk: str) -> tuple[int, ...]:
        """The ids of a span not seen before, noting whether its tokens may depend on its neighbours."""
        span = "\n " if chunk[0].isspace() else chunk  # a newline run is spaCy's span "\n "
        if span.isascii() and span.isalpha() and span not in self._rules:
            tokens = [span]  # no affix pattern, URL or phrase-matcher rule matches a word of letters alone
        else:
            tokens = [token.text for token in self._spacy(span)]
            if self._matcher_rules.search(span) and tokens != [token.text for token in self._affixes(span)]:
                self._context.add(chunk)
        ids = self._spans[chunk] = tuple(i for token in tokens for i in self._word(token.lower()))
        return ids

    def _word(self, word: str) -> tuple[int, ...]:
        ids = self._words.get(word)
        if ids is None:
            if " " in word:  # the release splits its BPE output at spaces: only its own code gets these right
                ids = self._release_bpe_ids(word)
            else:
                ids = tuple(token.id for token in self._bpe.tokenize(word))
            self._words[word] = ids
        return ids

    def _release_bpe_ids(self, token: str) -> tuple[int, ...]:
        """The release's `bpe()` and id look-up, verbatim in effect, for the rare word that holds a space."""
        if self._ranks is None:
            merges = json.loads(self.file.hf.to_str())["model"]["merges"]
            self._ranks = {tuple(m.split(" ") if isinstance(m, str) else m): r for r, m in enumerate(merges)}
        if not self._encoder:
            self._encoder = self.file.hf.get_vocab(with_added_tokens=False)
        word = (*token[:-1], token[-1] + SUFFIX)
        while len(word) > 1:
            pairs = set(zip(word, word[1:], strict=False))
            best = min(pairs, key=lambda pair: self._ranks.get(pair, float("inf")))
            if best not in self._ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        text = " ".join(word)
        if text == "\n  " + SUFFIX:
            text = "\n" + SUFFIX
        return tuple(self._encoder.get(symbol, self._unk) for symbol in text.split(" "))

    # -- the rest of the Tokenizer interface -------------------------------------------------------------

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        return self.file.decode(ids, skip_special_tokens=skip_special_tokens)

    def save(self, path: str | Path) -> None:
        self.file.save(path)

    def to_str(self) -> str:
        return self.file.to_str()

    @property
    def hf(self) -> tokenizers.Tokenizer:
        return self.file.hf

    @property
    def vocab_size(self) -> int:
        return self.file.vocab_size

    @property
    def fingerprint(self) -> str:
        """Differs from the file's own (what `Tokenizer.load` of it gives): the two tokenize differently."""
        return hashlib.sha256(f"{RELEASE}\n{self.file.fingerprint}".encode()).hexdigest()

    @property
    def eot_id(self) -> int:
        return self.file.eot_id

    @property
    def start_id(self) -> int:
        return self.file.start_id

    @property
    def delimiter_id(self) -> int:
        return self.file.delimiter_id

    @property
    def extract_id(self) -> int:
        return self.file.extract_id

    @property
    def pad_id(self) -> int:
        return self.file.pad_id

    def __repr__(self) -> str:
        return f"GPT1Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"
