"""Moving models between genpt, the original GPT-1 release and Hugging Face `OpenAIGPT*` folders.

Every conversion goes through one in-memory form, `genpt.interop.common.Converted`: a genpt model's tensors
and shape, its tokenizer and, for a fine-tuned model, its task and head. `read` makes one from any format,
each format's module writes one out; `convert` is the two together (`genpt convert`). To use a model from
any of these folders, see `genpt.load`.
"""

from __future__ import annotations

from pathlib import Path

from genpt import io
from genpt.errors import GenptError
from genpt.interop.common import Converted, cut_positions
from genpt.interop.genpt import read_genpt, write_genpt
from genpt.interop.hf import read_hf, write_hf
from genpt.interop.openai import read_release, write_release

FORMATS = ("openai", "hf", "genpt")
TARGETS = ("genpt", "hf", "openai")


def detect_format(path: str | Path) -> str:
    """openai (params_shapes.json), hf (config.json with a model_type) or genpt (a run or checkpoint folder)."""
    path = Path(path)
    if (path / "params_shapes.json").is_file():
        return "openai"
    config = path / "config.json"
    if config.is_file():
        data = io.read_json(config)
        return "hf" if isinstance(data, dict) and ("model_type" in data or "architectures" in data) else "genpt"
    if (path / "checkpoints").is_dir() or (path / "best").is_dir():
        return "genpt"
    if not path.exists():
        raise GenptError(f"{path}: no such folder")
    raise GenptError(f"{path}: neither a genpt run or checkpoint (config.json), an original GPT-1 release "
                     "(params_shapes.json + params_0.npy ...) nor a Hugging Face folder (config.json)")


def read(path: str | Path, source: str | None = None, *, n_ctx: int | None = None, n_head: int = 12,
         pipeline: str | None = None, seed: int = 0) -> Converted:
    """A model from any format; `source` is detected when not given.

    `pipeline` picks GPT-1's tokenizer pipeline (release or transformers) for a GPT-1 vocabulary: by default
    the release's for the release, transformers 5.x's for a Hugging Face folder (what `transformers` gives).
    """
    source = source or detect_format(path)
    if source == "openai":
        return read_release(path, n_head=n_head, n_ctx=n_ctx, pipeline=pipeline or "release", seed=seed)
    if source == "hf":
        return read_hf(path, n_ctx=n_ctx, pipeline=pipeline, seed=seed)
    if source == "genpt":
        converted = read_genpt(path)
        cut_positions(converted.state, converted.config, n_ctx, Path(path))
        return converted
    raise GenptError(f"--from must be one of {', '.join(FORMATS)}, got {source!r}")


def convert(path: str | Path, output: str | Path, *, source: str | None = None, target: str = "genpt",
            n_ctx: int | None = None, n_head: int = 12, pipeline: str | None = None, seed: int = 0) -> Path:
    """`genpt convert`: read `path` (format `source`, detected if None) and write it to `output` as `target`."""
    if target not in TARGETS:
        raise GenptError(f"--to must be one of {', '.join(TARGETS)}, got {target!r}")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise GenptError(f"{output}: already exists; choose another --output")
    converted = read(path, source, n_ctx=n_ctx, n_head=n_head, pipeline=pipeline, seed=seed)
    write = {"genpt": write_genpt, "hf": write_hf, "openai": write_release}[target]
    return write(converted, output)


__all__ = ["FORMATS", "TARGETS", "convert", "detect_format", "read"]
