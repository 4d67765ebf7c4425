"""Serving: any genpt folder behind an HTTP API (FastAPI + uvicorn) with dynamic batching and a page to try it.

The faces layer: it loads through the library and answers HTTP; nothing in the library imports it.
"""

from genpt.serve.app import Limits, create_app
from genpt.serve.loading import ServedModel, load_served
from genpt.serve.server import serve

__all__ = ["Limits", "ServedModel", "create_app", "load_served", "serve"]
