"""Helpers for the serving tests: tiny real runs (pre-trained, then fine-tuned) and a server on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from conftest import pretrain_tiny, shared_data

from genpt.cli import main
from genpt.serve import Limits, create_app, load_served

FINETUNED = {  # name: (built-in task, training file under ../shared/data)
    "sst2": ("sst2", ("glue", "SST-2", "train.tsv")),
    "mrpc": ("mrpc", ("glue", "MRPC", "train.tsv")),
    "stsb": ("stsb", ("glue", "STS-B", "train.tsv")),
    "cloze": ("story_cloze", ("story_cloze", "cloze_test_val__spring2016 - cloze_test_ALL_val.csv")),
}


def tiny_runs(root: Path) -> dict[str, Path]:
    """A pre-trained LM (2 layers, 32 wide, context 64) and models fine-tuned from it, built once per session."""
    runs = {"lm": root / "lm", **{name: root / name for name in FINETUNED}}
    if all((run / "done").exists() for run in runs.values()):
        return runs
    pretrain_tiny(root, runs["lm"], steps=20)
    (runs["lm"] / "done").touch()
    for name, (task, parts) in FINETUNED.items():
        lines = shared_data(*parts).read_text(encoding="utf-8").splitlines(keepends=True)
        train = root / f"{name}-train{Path(parts[-1]).suffix}"
        train.write_text("".join(lines[:33]), encoding="utf-8")
        assert main(["finetune", "--init", str(runs["lm"]), "--task", task, "--train", str(train), "--dev", str(train),
                     "-o", str(runs[name]), "--epochs", "1", "--batch-size", "8"]) == 0
        (runs[name] / "done").touch()
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(folder: Path, dtype: str = "float32", **limits):
    """`genpt serve folder` in a thread on a free loopback port; yields the base URL."""
    app = create_app(load_served(folder, dtype=dtype), Limits(**limits))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
