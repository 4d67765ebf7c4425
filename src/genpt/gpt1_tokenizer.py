"""GPT-1's tokenizer: ftfy, text standardisation, spaCy's English tokenizer, lower case, then `</w>` BPE.

One vocabulary (`encoder_bpe_40000.json`, 40,478 ids; `vocab_40000.bpe`, 40,000 merges), two pipelines:

- `release`: the original code's pipeline, id for id what the slow `OpenAIGPTTokenizer` of `transformers` 4.x
  gives with ftfy and spaCy installed (the tests hold it to transformers 4.46.3). That tokenizer also
  lower-cases the whole text before ftfy and spaCy see it, and reads the text "<unk>" as id 0; both are kept.
- `transformers`: what `transformers` 5.x's `OpenAIGPTTokenizer` does (BERT's normaliser and pre-tokenizer,
  no ftfy or spaCy). It is a plain tokenizer.json, so a plain genpt `Tokenizer`.

The release pipeline cannot live in a tokenizer.json (ftfy and spaCy's rules are Python), so `GPT1Tokenizer`
runs them around the BPE of Hugging Face `tokenizers`, with caches: spaCy tokenizes every space-separated
span on its own (its own span cache relies on that), so a span seen before costs one dict look-up. Its
tokenizer.json is the `transformers` pipeline's plus a no-op marker normaliser, which `load` reads to pick
this class; any other reader of the file gets the transformers 5.x tokenization of the same vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers

from genpt import io
from genpt.errors import GenptError
from genpt.tokenizer import Tokenizer

RELEASE = "gpt1-release"  # the kinds recorded in a converted checkpoint's config.json
TRANSFORMERS = "gpt1-transformers"
PIPELINES = {"release": RELEASE, "transformers": TRANSFORMERS}
ENCODER_FILE = "encoder_bpe_40000.json"
MERGES_FILE = "vocab_40000.bpe"
UNK = "<unk>"
SUFFIX = "</w>"
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


# -- the release pipeline -------------------------------------------------------------------------------


def text_standardize(text: str) -> str:
    """The release's clean-up before spaCy (dashes, ellipses, spaces around punctuation, newlines), verbatim."""
    text = text.replace("—", "-")
    text = text.replace("–", "-")
    text = text.replace("―", "-")
    text = text.replace("…", "...")
    text = text.replace("´", "'")
    text = re.sub(r"""(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\\+|\/+|\*+|\[+|\]+|}+|{+|\|+|_+)""", r" \1 ", text)
    text = re.sub(r"\s*\n\s*", " \n ", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    return text.strip()


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
    """`text_standardize(text).split(" ")` in one regex pass, except that each '\n' comes as the whitespace run
    it stands for.

    The standardised text is runs of non-space characters (each run of one punctuation mark apart) separated
    by ' ' or ' \n ', so those runs and the newline runs, less any at either end, are its pieces. These are
    also the spans that spaCy tokenizes one by one (see `spacy_spans`), a newline run being its span '\n '.
    """
    for a, b in (("—", "-"), ("–", "-"), ("―", "-"), ("…", "..."), ("´", "'")):
        text = text.replace(a, b)
    chunks = _CHUNKS.findall(text)
    if chunks and chunks[-1][0].isspace():
        chunks.pop()
    if chunks and chunks[0][0].isspace():
        del chunks[0]
    return chunks


_RUNS = re.compile(r"\S+|\s+")  # re's \s is str.isspace(), which is what spaCy splits on


def spacy_spans(text: str) -> list[str]:
    """The pieces spaCy's tokenizer splits `text` into before its rules run on each piece alone.

    Runs of non-space and of space characters alternate; a space that ends a token belongs to it, and any
    other whitespace becomes a piece of its own (as spaCy's `Tokenizer._tokenize_affixes` does).
    """
    spans = []
    for match in _RUNS.finditer(text):
        run = match.group()
        if run[0].isspace() and match.start() > 0 and run[0] == " ":
            run = run[1:]
        if run:
            spans.append(run)
    return spans


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
