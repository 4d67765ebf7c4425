"""Shared fixtures: where the shared data sets live, and a skip when they are absent; bench scripts as modules;
genpt's log on stderr."""

import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch

from genpt.data.corpus import prepare, train_tokenizer

# The kernels' registry order, not measured choices: tests stay repeatable and write no cache under ~.
# tests/test_kernels_select.py installs measuring selectors of its own. The fused GELU compiles for
# seconds in each new process (the CLI tests start many); tests/test_kernels_fused_gelu.py proves it.
os.environ.setdefault("GENPT_KERNELS", "first,gelu=plain")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCH = Path(__file__).resolve().parents[1] / "bench"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a reason when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (tests expect ../shared beside the checkout)")
    return path


@contextmanager
def bench_script(name: str, folder: Path = BENCH) -> Iterator[ModuleType]:
    """The script `folder/name.py` imported as a module; its folder stays on sys.path for the block, because
    bench scripts import their neighbours (`workers`, `train_throughput`), some only when a function runs."""
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def pretrain_tiny(root: Path, run: Path, steps: int) -> Path:
    """A 2-layer, 32-wide model pre-trained for `steps` on four 20 kB slices of tinyshakespeare (300 ids)."""
    from genpt.config import PretrainConfig
    from genpt.train.pretrain import pretrain

    text = shared_data("tinyshakespeare", "input.txt").read_text()
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (corpus / f"p{i}.txt").write_text(text[i * 20_000 : (i + 1) * 20_000])
    prepare([corpus], train_tokenizer([corpus], vocab_size=300), root / "shards", val_fraction=0.25, workers=1,
            progress=False)
    config = PretrainConfig()
    for key, value in dict(n_layer=2, n_embd=32, n_head=2, n_ctx=64).items():
        setattr(config.model, key, value)
    config.train.batch_size, config.train.max_steps, config.train.warmup_steps = 4, steps, 2
    config.data.shards = str(root / "shards")
    pretrain(config, run, progress=False)
    return run


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards of ten 30 kB slices of tinyshakespeare (a 400-id tokenizer): enough for tiny pre-training runs."""
    text = shared_data("tinyshakespeare", "input.txt").read_text()
    root = tmp_path_factory.mktemp("corpus")
    for i in range(10):
        (root / f"part{i}.txt").write_text(text[i * 30_000 : (i + 1) * 30_000])
    out = root / "shards"
    prepare([root], train_tokenizer([root], vocab_size=400), out, val_fraction=0.2, workers=1, progress=False)
    return out


class _CurrentStderr(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (capsys's stream during a test)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


@pytest.fixture
def stderr_logging(capsys):
    """genpt's log lines on the captured stderr, as `main` sends them outside pytest, so that a test
    counting stderr lines counts them too (under pytest the root logger already has handlers, so main's
    basicConfig does nothing)."""
    logger = logging.getLogger("genpt")
    handler, level = _CurrentStderr(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def broken_compiler(monkeypatch):
    """torch.compile failing as where no C++ compiler is, with genpt.kernels.inductor's state fresh, so that its
    compiled loops are tried again (and fail) in the test."""
    import functools

    from genpt.kernels import inductor

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("Compiler: cc not found")
        return call

    monkeypatch.setattr(inductor, "_ready", {})
    monkeypatch.setattr(inductor, "compiled", functools.cache(inductor.compiled.__wrapped__))
    monkeypatch.setattr(torch, "compile", broken)
