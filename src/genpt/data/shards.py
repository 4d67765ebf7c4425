"""Reading prepared token shards: a split as memory maps, and deterministic (B, T) windows of it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from genpt import io
from genpt.errors import GenptError

FORMAT = "genpt-shards"
FORMAT_VERSION = 1




class TokenShards:
    """One split ("train" or "val") of a prepared folder, as read-only memory maps."""

    def __init__(self, folder: str | Path, split: str = "train"):
        self.folder, self.split = Path(folder), split
        meta_path = self.folder / "meta.json"
        self.meta = io.read_json(meta_path, "make the folder with `genpt prepare`")
        try:
            if self.meta.get("format") != FORMAT or self.meta.get("version") != FORMAT_VERSION:
                raise GenptError(f"{meta_path}: not a {FORMAT} version {FORMAT_VERSION} meta.json")
            self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
            self.vocab_size = int(self.meta["vocab_size"])
            if self.dtype.name != ("uint16" if self.vocab_size <= 1 << 16 else "uint32"):
                raise GenptError(f"{meta_path}: dtype {self.meta['dtype']!r} does not hold token ids of a "
                                 f"{self.vocab_size}-id vocabulary (genpt prepare writes uint16 up to 65,536 ids, "
                                 "else uint32); run `genpt prepare` again")
            self.tokenizer_fingerprint = str(self.meta["tokenizer_fingerprint"])
            self.eot_id = int(self.meta["eot_id"])
            splits = self.meta["splits"]
            if split not in splits:
                raise GenptError(f"{meta_path}: no split {split!r}; it has {', '.join(splits)}")
            shards = [(str(s["file"]), int(s["tokens"])) for s in splits[split]["shards"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise GenptError(f"{meta_path}: malformed ({type(exc).__name__}: {exc}); "
                             "run `genpt prepare` again") from None
        if not shards or sum(n for _, n in shards) == 0:
            raise GenptError(f"{self.folder}: the {split} split is empty")
        self._maps = []
        for name, tokens in shards:
            path = self.folder / name
            if not path.is_file():
                raise GenptError(f"{path}: missing shard listed in meta.json; run `genpt prepare` again")
            size, expected = path.stat().st_size, tokens * self.dtype.itemsize
            if size != expected:
                raise GenptError(f"{path}: {size} bytes, expected {expected} ({tokens} {self.dtype.name} "
                                 "tokens); the file is truncated or changed; run `genpt prepare` again")
            self._maps.append(np.memmap(path, dtype=self.dtype, mode="r", shape=(tokens,)))
            _check_ids(path, self._maps[-1], self.vocab_size)
        self._starts = np.cumsum([0] + [len(m) for m in self._maps])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def token_counts(self, chunk: int = 1 << 24) -> np.ndarray:
        """How often each id occurs in the split (a unigram model's counts), read a chunk at a time."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for shard in self._maps:
            for start in range(0, len(shard), chunk):
                counts += np.bincount(shard[start : start + chunk], minlength=self.vocab_size)
        return counts

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length), across shard boundaries, as a new array."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"tokens [{start}, {start + length}) outside the {len(self)} of {self.split}")
        out = np.empty(length, dtype=self.dtype)
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        done = 0
        while done < length:
            offset = start + done - int(self._starts[shard])
            take = min(length - done, len(self._maps[shard]) - offset)
            out[done : done + take] = self._maps[shard][offset : offset + take]
            done += take
            shard += 1
        return out


def _check_ids(path: Path, ids: np.ndarray, vocab_size: int, chunk: int = 1 << 24) -> None:
    """Every id below the vocabulary size: a damaged shard fails here, by name, not as an IndexError mid-run."""
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        if part.size and int(part.max()) >= vocab_size:
            where = start + int(np.argmax(part >= vocab_size))
            raise GenptError(f"{path}: token {where} is id {int(ids[where])}, outside the vocabulary of "
                             f"{vocab_size} ids in meta.json; the file is damaged; run `genpt prepare` again")


class LMBatches:
    """Deterministic (B, T) windows for the LM: batch `index` is a pure function of (seed, index),
    so a resumed or re-sharded run sees exactly the same data.

    The split is cut into non-overlapping windows of seq_len tokens (starting at k * seq_len).
    Global sample s = b * B + i belongs to epoch e = s // num_windows and is window
    perm_e[s % num_windows], where perm_e = np.random.default_rng([seed, e]).permutation(num_windows):
    every window is seen once per epoch, in a new order each epoch.
    """

    def __init__(self, shards: TokenShards, batch_size: int, seq_len: int, seed: int):
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size ({batch_size}) and seq_len ({seq_len}) must be >= 1")
        self.shards, self.batch_size, self.seq_len, self.seed = shards, batch_size, seq_len, seed
        self.num_windows = len(shards) // seq_len
        if self.num_windows == 0:
            raise GenptError(f"{shards.folder}: the {shards.split} split has {len(shards)} tokens, fewer "
                             f"than the {seq_len} needed for one window; use more text or a shorter context")
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:  # recomputed only when an epoch boundary is crossed
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch, self._perm = epoch, rng.permutation(self.num_windows)
        return self._perm

    def get_samples(self, sample_indices: Iterable[int]) -> torch.Tensor:
        """LongTensor (len(sample_indices), seq_len) of the given global sample indices."""
        rows = []
        for sample in sample_indices:
            if sample < 0:
                raise IndexError(f"sample index {sample} must be >= 0")
            epoch, position = divmod(int(sample), self.num_windows)
            window = int(self._permutation(epoch)[position])
            rows.append(self.shards.read(window * self.seq_len, self.seq_len))
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def get(self, index: int) -> torch.Tensor:
        """Batch `index`: LongTensor (batch_size, seq_len)."""
        first = index * self.batch_size
        return self.get_samples(range(first, first + self.batch_size))
