"""The HTTP face of a served model: FastAPI routes, OpenAI's completion protocol, limits and their 4xx answers.

Routes parse, check limits, hand items to a `Batcher` and shape the answer; the model work is the
library's (genpt.serve.inference). Every refusal is one JSON object in OpenAI's error shape,
{"error": {"message", "type", "param"}}, so OpenAI's clients show the message as it is.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from genpt.data.tasks import Example
from genpt.data.transforms import encode_example
from genpt.predict import label_name
from genpt.serve.batching import Batcher, Busy
from genpt.serve.inference import Generation, classify_batch, generate_batch, score_batch
from genpt.serve.loading import ServedModel
from genpt.serve.schemas import ChooseRequest, ClassifyRequest, CompletionRequest, ScoreRequest


@dataclass
class Limits:
    """What one request may ask; each limit is a `genpt serve` flag."""

    max_batch: int = 32  # items in one forward pass (1: no batching)
    max_wait_ms: float = 5.0  # how long the first item of a batch waits for others
    max_body_bytes: int = 1 << 20
    max_items: int = 64  # texts per request; prompts x n for completions
    max_item_tokens: int | None = None  # tokens per text; default: the model's context
    max_new_tokens: int = 256  # a completion's max_tokens
    timeout: float = 60.0  # seconds a request may take
    max_queue: int = 4096  # items waiting before the server answers 503
    threads: int | None = None  # PyTorch threads of the inference thread; default PyTorch's own


class Refused(Exception):
    """A request the server will not run: its status, the field at fault, and why."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


class BodyLimit:
    """Refuse a body over `limit` bytes with 413, whether or not the client declared its length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is over {self.limit} bytes (--max-body-bytes)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await error(413, message)(scope, receive, send)
        received, refused = 0, False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    refused = True
                    await error(413, message)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            if not refused:  # the app's own answer to a body it never got whole is dropped
                await send(msg)

        await self.app(scope, limited_receive, guarded_send)


def create_app(served: ServedModel, limits: Limits | None = None) -> FastAPI:
    """The ASGI app serving `served`; run it with uvicorn (genpt.serve.server)."""
    limits = limits or Limits()
    # One inference thread: batches run one after another, and PyTorch's threads serve that one thread.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genpt-infer",
                                  initializer=torch.set_num_threads if limits.threads else None,
                                  initargs=(limits.threads,) if limits.threads else ())
    batchers: dict[str, Batcher] = {}

    def batcher(name: str, run) -> Batcher:
        if name not in batchers:
            batchers[name] = Batcher(lambda items: run(served, items), executor, max_batch=limits.max_batch,
                                     max_wait=limits.max_wait_ms / 1000, max_queue=limits.max_queue)
        return batchers[name]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"genpt: {served.name}", version="1", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    max_tokens = min(limits.max_item_tokens or served.n_ctx, served.n_ctx)
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = exc.errors()
        first = problems[0]
        # pydantic names the branch of a union it tried ("inputs.0.list[str]"): the field is what users know
        branch = {"str", "int", "float", "bool"}
        param = ".".join(str(p) for p in first["loc"] if p != "body" and not (
            isinstance(p, str) and (p in branch or "[" in p))) or None
        response = error(422, f"{param or 'body'}: {first['msg']}", param)
        body = json.loads(response.body)
        body["detail"] = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
        return JSONResponse(body, 422)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return error(exc.status, exc.message, exc.param)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        return error(500, f"the model failed on this request: {type(exc).__name__}: {exc}")

    def need(kind: str, route: str) -> None:
        kinds = {"lm": ("lm",), "task": ("classifier", "multiple_choice")}[kind]
        if served.kind not in kinds:
            what = {"lm": "a pre-trained language model", "classifier": "a fine-tuned classifier",
                    "multiple_choice": "a fine-tuned multiple-choice model"}
            raise Refused(404, f"{route} is not served for {served.name}, which is {what[served.kind]}; "
                          "GET /v1/model says what it answers")

    async def run(name: str, fn, items: list, keys: list) -> list:
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(batcher(name, fn).submit(item, key) for item, key in zip(items, keys, strict=True))),
                limits.timeout)
        except TimeoutError:
            raise Refused(408, f"the request took longer than {limits.timeout:g} s (--timeout)") from None
        except Busy as e:
            raise Refused(503, f"the server is busy: {e}; retry later") from None

    def check_items(count: int, param: str) -> None:
        if count > limits.max_items:
            raise Refused(422, f"{param}: {count} items; at most {limits.max_items} per request (--max-items)", param)

    def encode(texts: tuple[str, ...], truncate: bool, param: str):
        ft = served.finetuned
        encoded = encode_example(ft.task, Example(texts, None, param), ft.tokenizer, min(ft.max_len, max_tokens))
        if encoded.truncated and not truncate:
            raise Refused(422, f"{param}: longer than the {min(ft.max_len, max_tokens)} tokens the model reads; "
                          'pass "truncate": true to cut it', param)
        return encoded

    @app.get("/healthz")
    async def healthz() -> dict:
        # PyTorch's threads are set per thread: the inference thread's, as its initializer set them
        return {"status": "ok", "model": served.name, "threads": limits.threads or torch.get_num_threads(),
                "batches": {name: {"batches": b.batches, "items": b.items, "busy_s": round(b.busy, 3)}
                            for name, b in batchers.items()}}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": created,
                                            "owned_by": "genpt"}]}

    @app.get("/v1/model")
    async def model() -> dict:
        return {**served.describe(), "limits": {**limits.__dict__, "max_item_tokens": max_tokens}}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("genpt.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> JSONResponse:
        need("task", "/v1/classify")
        task = served.finetuned.task
        if task.transform == "multiple_choice":
            raise Refused(404, f"{served.name} chooses between answers: use /v1/choose")
        check_items(len(body.inputs), "inputs")
        width = 1 if task.transform == "classification" else 2
        items = []
        for i, value in enumerate(body.inputs):
            texts = (value,) if isinstance(value, str) else tuple(value)
            if len(texts) != width:
                what = "a text" if width == 1 else f"a pair of texts ({task.transform})"
                raise Refused(422, f"inputs.{i}: {served.name} ({task.name}) takes {what}, got {len(texts)}",
                              f"inputs.{i}")
            items.append(encode(texts, body.truncate, f"inputs.{i}"))
        results = await run("classify", classify_batch, items, [1] * len(items))
        out = []
        for encoded, (predicted, probs) in zip(items, results, strict=True):
            if task.target == "score":
                out.append({"score": predicted, "truncated": encoded.truncated})
                continue
            names = [str(label_name(task, k)) for k in range(len(probs))]
            out.append({"label": names[predicted], "probabilities": dict(zip(names, probs, strict=True)),
                        "truncated": encoded.truncated})
        return JSONResponse({"model": served.name, "task": task.name, "results": out})

    @app.post("/v1/choose")
    async def choose(body: ChooseRequest) -> dict:
        need("task", "/v1/choose")
        if served.kind != "multiple_choice":
            raise Refused(404, f"{served.name} is a classifier: use /v1/classify")
        check_items(len(body.candidates), "candidates")
        encoded = encode((body.context, *body.candidates), body.truncate, "context")
        ((best, probs),) = await run("choose", classify_batch, [encoded], [len(body.candidates)])
        return {"model": served.name, "choice": best, "answer": body.candidates[best], "probabilities": probs,
                "truncated": encoded.truncated}

    @app.post("/v1/score")
    async def score(body: ScoreRequest) -> dict:
        need("lm", "/v1/score")
        check_items(len(body.inputs), "inputs")
        tokenizer = served.tokenizer
        items = []
        for i, text in enumerate(body.inputs):
            ids = tokenizer.encode(text)
            if not ids:
                raise Refused(422, f"inputs.{i}: empty; nothing to score", f"inputs.{i}")
            if len(ids) > max_tokens and not body.truncate:
                raise Refused(422, f"inputs.{i}: {len(ids)} tokens; at most {max_tokens} (--max-item-tokens); "
                              'pass "truncate": true to keep the first ones', f"inputs.{i}")
            items.append(ids[:max_tokens])
        results = await run("score", score_batch, items, [None] * len(items))
        out = []
        for ids, logprobs in zip(items, results, strict=True):
            total = sum(logprobs)
            out.append({"tokens": [tokenizer.decode([i]) for i in ids], "ids": ids, "logprobs": [None, *logprobs],
                        "total": total, "mean": total / len(logprobs) if logprobs else None})
        return {"model": served.name, "results": out}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        need("lm", "/v1/completions")
        if body.model != served.name:
            raise Refused(404, f"model {body.model!r} is not served here; this server serves {served.name!r}",
                          "model")
        prompts = prompt_ids(body)
        check_items(len(prompts) * body.n, "n")
        limit = body.max_tokens if body.max_tokens is not None else 16
        if limit > limits.max_new_tokens:
            raise Refused(422, f"max_tokens: {limit}; at most {limits.max_new_tokens} (--max-new-tokens)",
                          "max_tokens")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        items = [Generation(ids, body.n, limit, body.temperature, body.top_p, body.stop, body.logprobs, body.seed,
                            emit=lambda event, p=p: loop.call_soon_threadsafe(events.put_nowait, (p, *event)))
                 for p, ids in enumerate(prompts)]
        # Only requests that sample alike share a batch; a seeded one runs alone, so that its seed repeats.
        key = (body.temperature, body.top_p, body.seed, uuid.uuid4() if body.seed is not None else None)
        batch = asyncio.ensure_future(asyncio.gather(*(batcher("generate", generate_batch).submit(item, key)
                                                       for item in items)))
        batch.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                                or events.put_nowait(("failed", t.exception())))
        stream = generation_events(items, events, batch, loop.time() + limits.timeout)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": served.name}
        if body.stream:
            return StreamingResponse(sse(stream, head), media_type="text/event-stream")
        return await collect(stream, head, len(prompts) * body.n, sum(len(ids) for ids in prompts) * body.n)

    def prompt_ids(body: CompletionRequest) -> list[list[int]]:
        prompt = body.prompt
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            prompt = [prompt]
        if not prompt:
            raise Refused(422, "prompt: empty list; give a text or a list of texts", "prompt")
        out = []
        for i, p in enumerate(prompt):
            ids = served.tokenizer.encode(p) if isinstance(p, str) else list(p)
            if any(not 0 <= t < served.tokenizer.vocab_size for t in ids):
                raise Refused(422, f"prompt.{i}: token ids must be 0 to {served.tokenizer.vocab_size - 1}",
                              f"prompt.{i}")
            ids = ids or [served.tokenizer.eot_id]  # an empty prompt starts a new document
            if len(ids) > max_tokens and not body.truncate:
                raise Refused(422, f"prompt.{i}: {len(ids)} tokens; at most {max_tokens} (--max-item-tokens); "
                              'pass "truncate": true to keep the last ones', f"prompt.{i}")
            out.append(ids[-max_tokens:])
        return out

    async def generation_events(items: list[Generation], events: asyncio.Queue, batch: asyncio.Future,
                                deadline: float) -> AsyncIterator[tuple]:
        """(choice index, "text", text, logprobs) and (choice index, "end", finish_reason, tokens), then done."""
        loop = asyncio.get_running_loop()
        open_rows = sum(item.n for item in items)
        n = items[0].n
        try:
            while open_rows:
                try:
                    event = await asyncio.wait_for(events.get(), deadline - loop.time())
                except TimeoutError:
                    raise Refused(408, f"the request took longer than {limits.timeout:g} s (--timeout)") from None
                if event[0] == "failed":
                    exc = event[1]
                    if isinstance(exc, Busy):
                        raise Refused(503, f"the server is busy: {exc}; retry later")
                    raise exc
                prompt, kind, j, *rest = event
                open_rows -= kind == "end"
                yield (prompt * n + j, kind, *rest)
        finally:
            for item in items:  # the client left or time ran out: stop making its tokens
                item.cancelled = True
            batch.cancel()

    def logprobs_block(infos: list[dict], offset: int, texts: list[str]) -> dict:
        offsets = []
        for text in texts:
            offsets.append(offset)
            offset += len(text)
        return {"tokens": [i["token"] for i in infos], "token_logprobs": [i["logprob"] for i in infos],
                "top_logprobs": [i.get("top", {}) for i in infos] if infos and "top" in infos[0] else None,
                "text_offset": offsets}

    async def sse(stream: AsyncIterator[tuple], head: dict) -> AsyncIterator[str]:
        offsets: dict[int, int] = {}
        try:
            async for index, kind, *rest in stream:
                if kind == "text":
                    text, info = rest
                    logprobs = None
                    if info is not None:
                        logprobs = logprobs_block([info], offsets.get(index, 0), [text])
                    offsets[index] = offsets.get(index, 0) + len(text)
                    choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": None}
                else:
                    choice = {"index": index, "text": "", "logprobs": None, "finish_reason": rest[0]}
                yield f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
        except Refused as e:
            yield f"data: {json.dumps({'error': {'message': e.message, 'type': 'invalid_request_error'}})}\n\n"
        except Exception as e:  # the status line is gone already: the error travels as an event
            yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"

    async def collect(stream: AsyncIterator[tuple], head: dict, rows: int, prompt_tokens: int) -> dict:
        texts: list[list[str]] = [[] for _ in range(rows)]
        infos: list[list[dict]] = [[] for _ in range(rows)]
        finish: list[str | None] = [None] * rows
        made = 0
        async for index, kind, *rest in stream:
            if kind == "text":
                texts[index].append(rest[0])
                if rest[1] is not None:
                    infos[index].append(rest[1])
            else:
                finish[index] = rest[0]
                made += rest[1]
        choices = [{"index": i, "text": "".join(texts[i]),
                    "logprobs": logprobs_block(infos[i], 0, texts[i]) if infos[i] else None,
                    "finish_reason": finish[i]} for i in range(rows)]
        return {**head, "choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": made,
                                                      "total_tokens": prompt_tokens + made}}

    return app
