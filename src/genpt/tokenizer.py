"""Byte-level BPE: train on text files, save and load `tokenizer.json`, and fine-tuning's special tokens.

Byte-level means every string is first turned into its UTF-8 bytes, so any text encodes without an
unknown token and decodes back exactly. There is no normalizer for the same reason: what goes in is
what comes out. The heavy lifting is Hugging Face `tokenizers`; this class pins the settings and
keeps the special-token ids in one place. Encoding goes through tiktoken instead wherever that gives
the very same ids (`genpt.fast_bpe` says when), several times faster.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from genpt import io
from genpt.errors import GenptError
from genpt.fast_bpe import build_encoding, cut_text

if TYPE_CHECKING:
    import tiktoken

SPECIAL_TOKENS: dict[str, str] = {
    "end_of_text": "<|endoftext|>",
    "start": "<|start|>",
    "delimiter": "<|delim|>",
    "extract": "<|extract|>",
    "pad": "<|pad|>",
}

# Imported vocabularies get the missing special tokens appended in this order, so that start /
# delimiter / extract land on ids 40478..40480 of the GPT-1 vocabulary, where the original model
# kept its three extra embeddings.
_APPEND_ORDER = ("start", "delimiter", "extract", "end_of_text", "pad")

# Threads get texts in pieces of at least this many characters (a few ms of work each); a batch of
# under two pieces is encoded in the calling thread.
_THREAD_CHARS = 1 << 17
_UNBUILT = object()  # Tokenizer._fast before the first encode


class Tokenizer:
    """A Hugging Face tokenizer that knows the special tokens and never lets plain text produce them.

    `hf` is not to be reconfigured after construction: the tiktoken encoder is derived from it once.
    """

    def __init__(self, hf: tokenizers.Tokenizer):
        self.hf = hf
        # Text that merely contains "<|endoftext|>" must not inject a control token: special
        # tokens are only ever placed by id (data/transforms.py, prepare), never parsed from text.
        # The flag is not stored in tokenizer.json, so it is set on every construction.
        self.hf.encode_special_tokens = True
        self._fast: tiktoken.Encoding | None | object = _UNBUILT

    def __getstate__(self) -> str:
        # The JSON alone: unpickling goes through __init__, which sets encode_special_tokens (a pickled
        # tokenizers.Tokenizer loses it) and leaves the tiktoken encoder to be rebuilt on first use.
        return self.hf.to_str()

    def __setstate__(self, state: str) -> None:
        self.__init__(tokenizers.Tokenizer.from_str(state))

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 16384,
        *,
        min_frequency: int = 2,
        progress: bool = False,
    ) -> Tokenizer:
        """Learn a byte-level BPE of `vocab_size` ids (special tokens are ids 0..4) from texts.

        `texts` may stream (genpt.data.corpus.train_tokenizer passes a corpus's documents): memory
        holds only the word counts, never the corpus.
        """
        minimum = 256 + len(SPECIAL_TOKENS)
        if vocab_size < minimum:
            raise GenptError(f"vocab_size {vocab_size} is too small: need at least {minimum} "
                             f"(256 byte symbols + {len(SPECIAL_TOKENS)} special tokens)")
        hf = tokenizers.Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS.values()),  # first, so they get ids 0..4
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknowns
            show_progress=progress,
        )
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    @classmethod
    def from_hf(cls, hf: tokenizers.Tokenizer) -> Tokenizer:
        """Wrap an existing tokenizer (e.g. the GPT-1 vocabulary), appending any missing special tokens.

        The argument is copied, not modified.
        """
        hf = tokenizers.Tokenizer.from_str(hf.to_str())
        wanted = [SPECIAL_TOKENS[name] for name in _APPEND_ORDER]
        missing = [token for token in wanted if hf.token_to_id(token) is None]
        if missing:
            hf.add_special_tokens(missing)
        return cls(hf)

    @classmethod
    def from_str(cls, json_text: str) -> Tokenizer:
        """A tokenizer from the JSON text of a tokenizer.json (how worker processes receive it)."""
        return cls(tokenizers.Tokenizer.from_str(json_text))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer.json (or the tokenizer.json inside a folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise GenptError(f"{path}: no such tokenizer file; train one with `genpt tokenizer train`")
        try:
            hf = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception for any parse failure
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GenptError(f"{path}: not a Hugging Face tokenizer.json ({reason})") from None
        missing = [token for token in SPECIAL_TOKENS.values() if hf.token_to_id(token) is None]
        if missing:
            raise GenptError(f"{path}: lacks the special tokens {', '.join(missing)}; train it with "
                             "`genpt tokenizer train` or import it with Tokenizer.from_hf")
        return cls(hf)

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json atomically: a reader sees the old file or the new one, never half of one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_text(path, self.hf.to_str(pretty=True))

    def to_str(self) -> str:
        """The tokenizer.json text (compact)."""
        return self.hf.to_str()

    # -- using one ----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        fast = self._tiktoken()
        if fast is not None and _utf8_encodable(text):
            return fast.encode_ordinary(text)
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Several texts at once, in parallel threads unless TOKENIZERS_PARALLELISM turns them off.

        tokenizers honours that variable itself; genpt's worker processes set it to false, as there
        the processes are the parallelism.
        """
        fast = self._tiktoken()
        if fast is None or not all(map(_utf8_encodable, texts)):
            # tokenizers: the `_fast` variant skips character offsets
            return [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]
        threads = _encode_threads()
        total = sum(map(len, texts))
        if threads == 1 or total < 2 * _THREAD_CHARS:
            return [fast.encode_ordinary(text) for text in texts]
        # A text longer than a quarter of a thread's share is cut where the pre-tokenizer splits anyway,
        # so that one book keeps every thread busy; short ones are left whole, saving the re-joining.
        size = max(_THREAD_CHARS, total // (4 * threads))
        pieces = [cut_text(text, size) for text in texts]
        ids = iter(fast.encode_ordinary_batch([p for cut in pieces for p in cut], num_threads=threads))
        out = []
        for cut in pieces:
            out.append(next(ids))
            for _ in range(len(cut) - 1):
                out[-1] += next(ids)
        return out

    @property
    def encodes_in_threads(self) -> bool:
        """Whether encode_batch runs on tiktoken, which uses every core from one process."""
        return self._tiktoken() is not None

    def _tiktoken(self) -> tiktoken.Encoding | None:
        """tiktoken's encoder for this vocabulary where it gives tokenizers' ids exactly, else None."""
        if self._fast is _UNBUILT:
            self._fast = build_encoding(self.hf)
        return self._fast

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text for `ids`; special tokens appear as their strings unless skipped."""
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def fingerprint(self) -> str:
        """sha256 of the compact JSON: equal fingerprints mean equal tokenization (survives save/load)."""
        return hashlib.sha256(self.hf.to_str().encode("utf-8")).hexdigest()

    def _special_id(self, name: str) -> int:
        return self.hf.token_to_id(SPECIAL_TOKENS[name])

    @property
    def eot_id(self) -> int:
        return self._special_id("end_of_text")

    @property
    def start_id(self) -> int:
        return self._special_id("start")

    @property
    def delimiter_id(self) -> int:
        return self._special_id("delimiter")

    @property
    def extract_id(self) -> int:
        return self._special_id("extract")

    @property
    def pad_id(self) -> int:
        return self._special_id("pad")

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


def _utf8_encodable(text: str) -> bool:
    """False for text with a lone surrogate (a JSON escape can make one): tiktoken would quietly encode
    it as U+FFFD, so such text goes to tokenizers, which refuses it, as it always has."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")  # about 1 ms a MB; tiktoken takes 50
    except UnicodeEncodeError:
        return False
    return True


def _encode_threads() -> int:
    """Threads for a batch: 1 where TOKENIZERS_PARALLELISM is off, else RAYON_NUM_THREADS or one per core.

    The variables are read as tokenizers reads them, so both encoders follow the same settings.
    """
    if os.environ.get("TOKENIZERS_PARALLELISM", "true").lower() in ("", "off", "false", "f", "no", "n", "0"):
        return 1
    threads = os.environ.get("RAYON_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
