"""`genpt serve`: load a folder, build the app, run it under uvicorn until interrupted."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from genpt.errors import GenptError
from genpt.serve.app import Limits, create_app
from genpt.serve.loading import load_served

log = logging.getLogger("genpt")


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          name: str | None = None, dtype: str = "float32") -> None:
    """Serve the model in `path` on host:port (loopback by default: nothing outside this machine reaches it)."""
    limits = limits or Limits()
    for field in ("max_batch", "max_body_bytes", "max_items", "max_new_tokens", "max_queue"):
        if getattr(limits, field) < 1:
            raise GenptError(f"--{field.replace('_', '-')} is {getattr(limits, field)}; it must be 1 or more")
    if not (limits.timeout > 0 and limits.max_wait_ms >= 0):  # NaN fails both comparisons, so it is refused too
        raise GenptError("--timeout must be above 0 and --max-wait-ms 0 or more")
    served = load_served(path, name=name, dtype=dtype)
    log.info("serving %s (%s) on http://%s:%d/", served.name, served.kind, host, port)
    uvicorn.run(create_app(served, limits), host=host, port=port, log_level="warning", access_log=False)
