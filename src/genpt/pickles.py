"""Reading PyTorch's pickle files (`optimizer.pt`, `pytorch_model.bin`) without running what they carry.

`torch.load(weights_only=True)` already refuses anything but tensors and plain containers; its message
then advises `weights_only=False`, which would run the file's code. Here the refusal says instead that
the file is not trusted, in one line.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from genpt.errors import GenptError


def load_tensors(path: str | Path) -> Any:
    """The tensors and plain containers pickled in `path`; anything else is refused, never executed."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), "")
        if detail:
            raise GenptError(f"{path}: not trusted: it holds Python objects other than tensors, which genpt never "
                             f"unpickles ({detail.rstrip('.')})") from None
        raise GenptError(f"{path}: not a PyTorch tensor file (damaged or another format)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        if isinstance(e, IsADirectoryError | PermissionError):
            raise GenptError(f"{path}: cannot be read ({e.strerror})") from None
        raise GenptError(f"{path}: not a PyTorch tensor file (damaged or another format)") from None
