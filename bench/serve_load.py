"""Load test of `genpt serve`: many concurrent clients on the loopback, with dynamic batching and without.

Two servers run side by side as `genpt serve` subprocesses on free 127.0.0.1 ports, one with
`--max-batch B` and one with `--max-batch 1` (no batching); the load alternates between them in
rounds, so that a change in the machine's load falls on both alike. Each client holds one keep-alive
HTTP/1.1 connection and sends its next request when the last is answered. Everything is bounded:
`--requests` per round and server, `--seconds` per round, and the servers are stopped at the end.
Reported per endpoint and server: requests, errors, requests/s, p50 and p99 latency, and the ratio
of requests/s with batching to without, with the CPU model.

Without RUN it builds two models with random weights in a temporary folder (the speed of a forward
pass does not depend on the weights): a classifier (SST-2's task) and a language model of
`--layers`/`--width`/`--context`, with a tokenizer trained on genpt's own docs.

    python bench/serve_load.py                                  # classify and completions, 64 clients
    python bench/serve_load.py --clients 8 --requests 40 --rounds 1 --json   # the suite's short version
    python bench/serve_load.py --classifier runs/demo-genre --endpoints classify
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from workers import cpu_name, src_path_env

WORDS = ("the film was a gorgeous witty moving dull long slow bright story of love and war told with care "
         "by actors who never quite find the heart of it yet the music carries every scene").split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classifier", help="a fine-tuned classifier folder (default: built with random weights)")
    p.add_argument("--lm", help="a language model folder (default: built with random weights)")
    p.add_argument("--endpoints", default="classify,completions", help="comma-separated: classify, completions")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients, one connection each")
    p.add_argument("--requests", type=int, default=600, help="requests per round and server")
    p.add_argument("--seconds", type=float, default=30.0, help="time limit of one round on one server")
    p.add_argument("--rounds", type=int, default=4, help="rounds alternating between the two servers")
    p.add_argument("--warmup", type=int, help="requests per server before the measured rounds (default: --requests)")
    p.add_argument("--max-batch", type=int, default=32, help="the batching server's --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-tokens", type=int, default=16, help="tokens per completion")
    p.add_argument("--threads", type=int, help="both servers' --threads (PyTorch threads for inference)")
    p.add_argument("--dtype", default="float32", help="both servers' --dtype")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--json", action="store_true", help="print one JSON report instead of a table")
    return p.parse_args(argv)


def build_models(root: Path, args: argparse.Namespace) -> dict[str, Path]:
    """A random-weight classifier and LM in genpt's checkpoint format, with a tokenizer trained on genpt's docs."""
    import torch

    from genpt.checkpoint import write_checkpoint
    from genpt.config import ModelConfig
    from genpt.data.corpus import train_tokenizer
    from genpt.data.tasks import builtin_task
    from genpt.model import GPT, GPTForTask

    repo = Path(__file__).resolve().parents[1]
    tokenizer = train_tokenizer([str(repo / "README.md"), str(repo / "docs")], vocab_size=args.vocab)
    tokenizer.save(root / "tokenizer.json")
    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_ctx=args.context, n_embd=args.width,
                         n_layer=args.layers, n_head=max(1, args.width // 64))
    identity = {"fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size}
    torch.manual_seed(0)
    task = builtin_task("sst2")
    write_checkpoint(root / "classifier", GPTForTask(config, task.transform, 2), None, {"step": 0},
                     config={"model": dataclasses.asdict(config), "tokenizer": identity, "task": task.to_dict(),
                             "head": {"n_out": 2, "max_len": args.context, "clf_pdrop": 0.1}},
                     tokenizer_json=root / "tokenizer.json")
    write_checkpoint(root / "lm", GPT(config), None, {"step": 0},
                     config={"model": dataclasses.asdict(config), "tokenizer": identity},
                     tokenizer_json=root / "tokenizer.json")
    return {"classify": root / "classifier", "completions": root / "lm"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, max_batch: int, args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "genpt", "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
               "--name", "bench", "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--max-items", str(max(64, args.clients)), "--dtype", args.dtype]
    command += ["--threads", str(args.threads)] if args.threads else []
    server = subprocess.Popen(command, env=src_path_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"genpt serve exited with {server.returncode}: {server.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("genpt serve did not answer /healthz within 120 s")


def request_body(endpoint: str, rng: random.Random, args: argparse.Namespace) -> bytes:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
    if endpoint == "classify":
        return json.dumps({"inputs": [text], "truncate": True}).encode()
    return json.dumps({"model": "bench", "prompt": text, "max_tokens": args.max_tokens, "temperature": 1.0,
                       "truncate": True}).encode()


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes) -> int:
    """One POST on a keep-alive connection; the status code (the body is read and dropped)."""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    await reader.readexactly(int(headers["content-length"]))
    return int(head[0].split(" ", 2)[1])


async def load(port: int, endpoint: str, args: argparse.Namespace, seed: int) -> dict:
    """`--clients` clients sending until `--requests` are answered or `--seconds` have passed."""
    path = f"/v1/{endpoint}"
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.monotonic() + args.seconds

    async def client(i: int) -> None:
        nonlocal errors, sent
        rng = random.Random(seed * 1000 + i)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while sent < args.requests and time.monotonic() < stop_at:
                sent += 1
                start = time.perf_counter()
                try:
                    status = await asyncio.wait_for(post(reader, writer, path, request_body(endpoint, rng, args)),
                                                    max(0.1, stop_at - time.monotonic() + 60))
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - start)
                errors += status != 200
        finally:
            writer.close()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(args.clients)))
    return {"requests": len(latencies), "errors": errors, "seconds": time.perf_counter() - start,
            "client_cpu_s": time.process_time() - cpu, "latencies": latencies}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux), to set beside the clients' own."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measured_round(server: subprocess.Popen, port: int, endpoint: str, args: argparse.Namespace, seed: int) -> dict:
    """One round of load on one server, with the server's CPU seconds, its batch counts and the load average."""
    before = cpu_seconds(server.pid), health(port)
    run = asyncio.run(load(port, endpoint, args, seed))
    after = cpu_seconds(server.pid), health(port)
    run["server_cpu_s"] = after[0] - before[0] if None not in (after[0], before[0]) else None
    name = "classify" if endpoint == "classify" else "generate"
    batches = [h["batches"].get(name, {}) for h in (before[1], after[1])]
    run["batches"] = batches[1].get("batches", 0) - batches[0].get("batches", 0)
    run["items"] = batches[1].get("items", 0) - batches[0].get("items", 0)
    run["load"] = os.getloadavg()[0]
    return run


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        return json.loads(r.read())


def summary(runs: list[dict]) -> dict:
    latencies = sorted(x for r in runs for x in r["latencies"])
    seconds = sum(r["seconds"] for r in runs)
    done = sum(r["requests"] for r in runs)
    return {"requests": done, "errors": sum(r["errors"] for r in runs), "requests_per_s": done / seconds,
            "rounds_per_s": [r["requests"] / r["seconds"] for r in runs],
            "client_cpu_s": sum(r["client_cpu_s"] for r in runs),
            "server_cpu_s": sum(r["server_cpu_s"] or 0.0 for r in runs), "seconds": seconds,
            "mean_batch": sum(r["items"] for r in runs) / max(1, sum(r["batches"] for r in runs)),
            "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    report: dict = {"cpu": cpu_name(), "cores": os.cpu_count(), "clients": args.clients, "threads": args.threads,
                    "dtype": args.dtype,
                    "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "endpoints": {}}
    with tempfile.TemporaryDirectory(prefix="genpt-serve-load-") as tmp:
        folders = {"classify": args.classifier, "completions": args.lm}
        if not all(folders[e] for e in endpoints):
            built = build_models(Path(tmp), args)
            report["model"] = {"layers": args.layers, "width": args.width, "context": args.context,
                               "vocab": args.vocab, "weights": "random"}
            folders = {e: Path(folders[e]) if folders[e] else built[e] for e in endpoints}
        for endpoint in endpoints:
            servers = {name: start_server(Path(folders[endpoint]), batch, args)
                       for name, batch in (("batched", args.max_batch), ("unbatched", 1))}
            try:
                # One unmeasured round each first: a shape's first pass measures genpt's kernel choices
                # (genpt.kernels.select) and builds oneDNN's kernels for it, once per process.
                warm = argparse.Namespace(**{**vars(args), "requests": args.warmup or args.requests})
                for _, port in servers.values():
                    asyncio.run(load(port, endpoint, warm, seed=-1))
                runs: dict[str, list[dict]] = {"batched": [], "unbatched": []}
                for round_ in range(args.rounds):
                    order = ("batched", "unbatched") if round_ % 2 == 0 else ("unbatched", "batched")
                    for name in order:
                        server, port = servers[name]
                        runs[name].append(measured_round(server, port, endpoint, args, round_))
                threads = {name: health(port).get("threads") for name, (_, port) in servers.items()}
            finally:
                for server, _ in servers.values():
                    server.terminate()
                    try:
                        server.wait(30)
                    except subprocess.TimeoutExpired:
                        server.kill()
            result = {name: {**summary(r), "threads": threads[name]} for name, r in runs.items()}
            result["ratio"] = result["batched"]["requests_per_s"] / max(1e-9, result["unbatched"]["requests_per_s"])
            # each round of one server beside the round of the other next to it in time: their median ratio
            result["round_ratios"] = [b["requests"] / b["seconds"] / max(1e-9, u["requests"] / u["seconds"])
                                      for b, u in zip(runs["batched"], runs["unbatched"], strict=True)]
            result["median_ratio"] = statistics.median(result["round_ratios"])
            result["loads"] = [r["load"] for name in runs for r in runs[name]]
            report["endpoints"][endpoint] = result
    if args.json:
        print(json.dumps(report))
    else:
        print(f"CPU: {report['cpu']} ({report['cores']} cores); {args.clients} clients; "
              f"batching: --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g} vs --max-batch 1; "
              f"--threads {args.threads or 'default'} --dtype {args.dtype}; load average {os.getloadavg()[0]:.1f}")
        if "model" in report:
            print("model: random weights, {layers} layers, width {width}, context {context}, vocab {vocab}".format(
                **report["model"]))
        print(f"{'endpoint':<12} {'server':<10} {'threads':>7} {'requests':>8} {'errors':>6} {'req/s':>8} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'batch':>5} {'server CPU s':>12} {'client CPU s':>12}  req/s by round")
        for endpoint, result in report["endpoints"].items():
            for name in ("batched", "unbatched"):
                r = result[name]
                rounds = " ".join(f"{x:.0f}" for x in r["rounds_per_s"])
                print(f"{endpoint:<12} {name:<10} {r['threads'] or '?':>7} {r['requests']:>8} {r['errors']:>6} "
                      f"{r['requests_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['mean_batch']:>5.1f} "
                      f"{r['server_cpu_s']:>12.2f} {r['client_cpu_s']:>12.2f}  {rounds}")
            ratios = " ".join(f"{x:.2f}" for x in result["round_ratios"])
            print(f"{endpoint:<12} batched / unbatched requests/s: {result['ratio']:.2f}x overall, median of rounds "
                  f"{result['median_ratio']:.2f}x ({ratios}); load average {min(result['loads']):.1f} to "
                  f"{max(result['loads']):.1f}")
    return report


if __name__ == "__main__":
    main()
