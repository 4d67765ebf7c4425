"""genpt serve through a real HTTP connection: tiny real models, OpenAI's client, limits and their answers."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from serving import running, tiny_runs

from genpt.cli import main
from genpt.data.tasks import Example
from genpt.data.transforms import encode_example
from genpt.generate import generate
from genpt.load import load_finetuned, load_model
from genpt.predict import predict
from genpt.scoring import token_logprobs
from genpt.serve import Limits, create_app, load_served
from genpt.serve.batching import Batcher
from genpt.serve.inference import classify_batch


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.getbasetemp() / "serve-runs")


def post(url: str, path: str, body) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)


def test_classifier_answers_labels_with_the_probabilities_of_predict(runs):
    texts = ["a gorgeous, witty film", "dull and far too long", "it is a movie"]
    expected = predict(load_finetuned(runs["sst2"]), [Example((t,), None, "x") for t in texts])
    with running(runs["sst2"]) as url:
        r = post(url, "/v1/classify", {"inputs": texts})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["label"] for x in results] == [str(p) for p in expected.predicted]
    for got, probs in zip(results, expected.probabilities, strict=True):
        assert list(got["probabilities"]) == ["0", "1"]
        assert list(got["probabilities"].values()) == pytest.approx(probs, abs=1e-5)


@pytest.mark.parametrize("name", ["mrpc", "stsb"])
def test_similarity_model_takes_pairs_and_refuses_a_single_text(runs, name):
    pairs = [["The cat sat on the mat.", "A cat was sitting on the mat."], ["Stocks fell.", "It rained all day."]]
    expected = predict(load_finetuned(runs[name]), [Example(tuple(p), None, "x") for p in pairs])
    with running(runs[name]) as url:
        r = post(url, "/v1/classify", {"inputs": pairs})
        single = post(url, "/v1/classify", {"inputs": ["only one sentence"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    if name == "stsb":  # a regression: a score, no probabilities
        assert [x["score"] for x in results] == pytest.approx(expected.predicted, abs=1e-5)
    else:
        assert [x["label"] for x in results] == [str(p) for p in expected.predicted]
    assert single.status_code == 422 and single.json()["error"]["param"] == "inputs.0"
    assert "pair of texts" in single.json()["error"]["message"]


def test_multiple_choice_model_gives_probabilities_across_the_candidates(runs):
    context = "Tom wanted milk."
    candidates = ["He bought milk.", "He flew.", "He sang."]
    finetuned = load_finetuned(runs["cloze"])
    encoded = encode_example(finetuned.task, Example((context, *candidates), None, "x"), finetuned.tokenizer, 64)
    expected = classify_batch(load_served(runs["cloze"]), [encoded])[0]
    with running(runs["cloze"]) as url:
        r = post(url, "/v1/choose", {"context": context, "candidates": candidates})
        wrong = post(url, "/v1/classify", {"inputs": ["x"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["probabilities"] == pytest.approx(expected[1], abs=1e-5) and sum(body["probabilities"]) == \
        pytest.approx(1.0)
    assert body["choice"] == expected[0] and body["answer"] == candidates[expected[0]]
    assert wrong.status_code == 404 and "/v1/choose" in wrong.json()["error"]["message"]


def test_greedy_completion_is_what_generate_makes(runs):
    loaded = load_model(runs["lm"])
    model, tokenizer = loaded.lm, loaded.tokenizer
    prompt = "ROMEO:"
    ids = tokenizer.encode(prompt)
    row = generate(model, [ids], 20, temperature=0)[0]
    expected = tokenizer.decode(row[len(ids):])
    with running(runs["lm"]) as url:
        r = post(url, "/v1/completions", {"model": "lm", "prompt": prompt, "max_tokens": 20, "temperature": 0})
        # stopped where a stop sequence first appears, which is left out
        stop = expected[5:8]
        stopped = post(url, "/v1/completions", {"model": "lm", "prompt": prompt, "max_tokens": 20,
                                                "temperature": 0, "stop": [stop]})
        several = post(url, "/v1/completions", {"model": "lm", "prompt": [prompt, "KING"], "max_tokens": 5, "n": 3})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["text"] == expected and choice["finish_reason"] == "length"
    assert r.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 20, "total_tokens": len(ids) + 20}
    assert stopped.json()["choices"][0]["text"] == expected[: expected.index(stop)]
    assert stopped.json()["choices"][0]["finish_reason"] == "stop"
    assert [c["index"] for c in several.json()["choices"]] == list(range(6))


def test_completion_logprobs_are_the_models_log_probabilities(runs):
    loaded = load_model(runs["lm"])
    model, tokenizer = loaded.lm, loaded.tokenizer
    prompt = "First Citizen:"
    with running(runs["lm"]) as url:
        r = post(url, "/v1/completions", {"model": "lm", "prompt": prompt, "max_tokens": 8, "temperature": 0,
                                          "logprobs": 3})
    logprobs = r.json()["choices"][0]["logprobs"]
    ids = tokenizer.encode(prompt)
    row = generate(model, [ids], 8, temperature=0)[0]
    expected = token_logprobs(model, row)[len(ids) - 1:]  # scored independently: prompt and completion in one pass
    assert logprobs["token_logprobs"] == pytest.approx(expected, abs=1e-4)
    assert logprobs["tokens"] == [tokenizer.decode([t]) for t in row[len(ids):]]
    assert all(len(top) == 3 and max(top.values()) == pytest.approx(lp, abs=1e-4)  # greedy: the top token
               for top, lp in zip(logprobs["top_logprobs"], expected, strict=True))
    assert logprobs["text_offset"][0] == 0


def test_streamed_completion_arrives_as_server_sent_events_that_join_to_the_plain_one(runs):
    body = {"model": "lm", "prompt": "To be", "max_tokens": 24, "temperature": 0}
    with running(runs["lm"]) as url:
        plain = post(url, "/v1/completions", body).json()["choices"][0]["text"]
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert len(chunks) > 2  # tokens came one by one, not as one piece
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_openai_client_completions_plain_and_streamed(runs):
    openai = pytest.importorskip("openai", reason="the openai client is in the test extras")
    with running(runs["lm"]) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["lm"]
        plain = client.completions.create(model="lm", prompt="ROMEO:", max_tokens=12, temperature=0)
        stream = client.completions.create(model="lm", prompt="ROMEO:", max_tokens=12, temperature=0, stream=True)
        streamed = "".join(chunk.choices[0].text for chunk in stream)
        with pytest.raises(openai.NotFoundError, match="not served here"):
            client.completions.create(model="gpt-4", prompt="x")
    assert plain.object == "text_completion" and plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 12 and streamed == plain.choices[0].text != ""


def test_seeded_sampling_repeats_and_a_tiny_top_p_keeps_only_the_top_token(runs):
    body = {"model": "lm", "prompt": "KING", "max_tokens": 16, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    with running(runs["lm"]) as url:
        first, second = (post(url, "/v1/completions", body).json()["choices"][0]["text"] for _ in range(2))
        nucleus = post(url, "/v1/completions", {**body, "top_p": 1e-6, "seed": None})
        greedy = post(url, "/v1/completions", {**body, "temperature": 0, "seed": None})
    assert first == second
    assert nucleus.json()["choices"][0]["text"] == greedy.json()["choices"][0]["text"]


def test_score_gives_each_tokens_log_probability(runs):
    loaded = load_model(runs["lm"])
    model, tokenizer = loaded.lm, loaded.tokenizer
    texts = ["Now is the winter of our discontent", "O Romeo, Romeo"]
    with running(runs["lm"]) as url:
        r = post(url, "/v1/score", {"inputs": texts})
    for text, result in zip(texts, r.json()["results"], strict=True):
        ids = tokenizer.encode(text)
        assert result["ids"] == ids and result["logprobs"][0] is None
        assert result["logprobs"][1:] == pytest.approx(token_logprobs(model, ids), abs=1e-5)


def test_models_model_healthz_and_the_page(runs):
    with running(runs["sst2"]) as url:
        models = httpx.get(url + "/v1/models").json()
        info = httpx.get(url + "/v1/model").json()
        health = httpx.get(url + "/healthz").json()
        page = httpx.get(url + "/")
        openapi = httpx.get(url + "/openapi.json").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "sst2"
    assert info["kind"] == "classifier" and info["task"]["labels"] == ["0", "1"] and info["context"] == 64
    assert info["parameters"] > 0 and "accuracy" in info["metrics"]["val"] and info["metrics"]["step"] > 0
    assert health["status"] == "ok"
    assert page.headers["content-type"].startswith("text/html") and "<script>" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    assert "/v1/classify" in openapi["paths"] and "/v1/completions" in openapi["paths"]


def test_limits_answer_4xx_naming_the_field_and_the_server_keeps_answering(runs):
    with running(runs["lm"], max_items=4, max_new_tokens=32, max_body_bytes=2000, max_item_tokens=40) as url:
        def completion(**fields):
            return post(url, "/v1/completions", {"model": "lm", "prompt": "x", **fields})

        cases = {
            "max_tokens": completion(max_tokens=33),
            "n": completion(n=5),
            "temperature": completion(temperature="hot"),
            "presence_penalty": completion(presence_penalty=0.5),
            "prompt.0": completion(prompt="word " * 100),
            "inputs": post(url, "/v1/score", {"inputs": ["a"] * 5}),
            "inputs.1": post(url, "/v1/score", {"inputs": ["a", 3]}),
            "model": completion(model="other"),
        }
        malformed = httpx.post(url + "/v1/completions", content=b'{"model": "lm", "prompt": ',
                               headers={"content-type": "application/json"})
        too_big = httpx.post(url + "/v1/score", json={"inputs": ["a" * 3000]})
        chunked = httpx.post(url + "/v1/score", content=iter([b'{"inputs": ["', b"a" * 3000, b'"]}']),
                             headers={"content-type": "application/json"})
        truncated = post(url, "/v1/completions", {"model": "lm", "prompt": "word " * 100, "truncate": True,
                                                  "max_tokens": 2})
        wrong_kind = post(url, "/v1/classify", {"inputs": ["x"]})
        health = httpx.get(url + "/healthz")
    for param, r in cases.items():
        expected = 404 if param == "model" else 422
        assert r.status_code == expected, (param, r.text)
        assert r.json()["error"]["param"] == param, r.json()
        assert param in r.json()["error"]["message"]
    assert malformed.status_code == 422 and "JSON" in malformed.json()["error"]["message"]
    assert too_big.status_code == 413 and chunked.status_code == 413
    assert truncated.status_code == 200 and truncated.json()["usage"]["prompt_tokens"] == 40
    assert wrong_kind.status_code == 404 and "language model" in wrong_kind.json()["error"]["message"]
    assert health.status_code == 200


def test_classify_refuses_or_truncates_a_long_text_as_asked(runs):
    long = "a long and winding sentence " * 40
    with running(runs["sst2"]) as url:
        refused = post(url, "/v1/classify", {"inputs": ["fine", long]})
        cut = post(url, "/v1/classify", {"inputs": ["fine", long], "truncate": True})
        wrong_type = post(url, "/v1/classify", {"inputs": ["fine", 3]})
    assert wrong_type.status_code == 422 and wrong_type.json()["error"]["param"] == "inputs.1"
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "inputs.1"
    assert "truncate" in refused.json()["error"]["message"]
    assert [r["truncated"] for r in cut.json()["results"]] == [False, True]


def test_a_request_past_the_timeout_gets_408_and_others_go_on(runs):
    with running(runs["lm"], timeout=0.01, max_new_tokens=256) as url:
        slow = post(url, "/v1/completions", {"model": "lm", "prompt": "x", "max_tokens": 256})
        with httpx.stream("POST", url + "/v1/completions", json={"model": "lm", "prompt": "x", "max_tokens": 256,
                                                                   "stream": True}, timeout=60) as r:
            lines = [line for line in r.iter_lines() if line]
        health = httpx.get(url + "/healthz")
    assert slow.status_code == 408 and "--timeout" in slow.json()["error"]["message"]
    assert lines[-1] == "data: [DONE]" and "--timeout" in lines[-2]
    assert health.status_code == 200


def test_concurrent_requests_get_the_answers_they_would_get_alone(runs):
    texts = [f"{'very ' * i}good film" for i in range(12)]
    with running(runs["sst2"]) as url:
        alone = [post(url, "/v1/classify", {"inputs": [t]}).json()["results"][0] for t in texts]
    with running(runs["sst2"], max_wait_ms=100) as url:
        together: dict[int, dict] = {}
        barrier = threading.Barrier(len(texts))

        def ask(i: int) -> None:
            barrier.wait()
            together[i] = post(url, "/v1/classify", {"inputs": [texts[i]]}).json()["results"][0]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, result in enumerate(alone):
        assert together[i]["label"] == result["label"]
        assert list(together[i]["probabilities"].values()) == pytest.approx(list(result["probabilities"].values()),
                                                                            abs=1e-5)


def test_batcher_puts_items_waiting_together_in_one_padded_pass_with_the_same_results(runs):
    served = load_served(runs["sst2"])
    ft = served.finetuned
    items = [encode_example(ft.task, Example(("good " * n,), None, "x"), ft.tokenizer, 64) for n in (1, 9, 30)]
    alone = [classify_batch(served, [item])[0] for item in items]
    calls = []

    def run(batch):
        calls.append(len(batch))
        return classify_batch(served, batch)

    async def submit_all():
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(run, executor, max_batch=8, max_wait=0.01)
            return await asyncio.gather(*(batcher.submit(item) for item in items))

    together = asyncio.run(submit_all())
    assert calls == [3]  # three lengths, one batch: the padding changes no answer
    for (p1, probs1), (p2, probs2) in zip(alone, together, strict=True):
        assert p1 == p2 and probs1 == pytest.approx(probs2, abs=1e-5)


def test_batcher_with_max_batch_1_runs_each_item_alone_and_survives_a_failing_batch():
    calls = []

    def run(batch):
        calls.append(list(batch))
        if batch == ["bad"]:
            raise ValueError("boom")
        return [x.upper() for x in batch]

    async def submit_all():
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(run, executor, max_batch=1, max_wait=0.01)
            return await asyncio.gather(*(batcher.submit(x) for x in ["a", "bad", "c"]), return_exceptions=True)

    results = asyncio.run(submit_all())
    assert calls == [["a"], ["bad"], ["c"]]
    assert results[0] == "A" and isinstance(results[1], ValueError) and results[2] == "C"


def test_cli_serve_refuses_a_folder_it_cannot_serve(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", str(tmp_path)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_app_builds_without_a_server_for_a_language_model(runs):
    app = create_app(load_served(runs["lm"]), Limits(max_batch=1))
    assert {"/v1/completions", "/v1/score", "/v1/models", "/healthz", "/"} <= {r.path for r in app.routes}


def test_length_groups_bound_the_padding_and_keep_every_item_once():
    from genpt.serve.inference import length_groups

    lengths = [15, 65, 17, 64, 30, 31, 29, 3, 60]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert max(lengths[i] for i in g) * len(g) <= 1.25 * sum(lengths[i] for i in g)
    assert len(groups) < len(lengths)  # like lengths still share a pass


def test_pack_rows_places_every_sequence_once_inside_its_row_without_overlap():
    from genpt.serve.inference import pack_rows

    lengths = [15, 64, 17, 3, 30, 31, 29, 60, 1, 48]
    place = pack_rows(lengths, 64)
    rows: dict[int, list[tuple[int, int]]] = {}
    for n, (row, offset) in zip(lengths, place, strict=True):
        assert 0 <= offset and offset + n <= 64
        rows.setdefault(row, []).append((offset, offset + n))
    for spans in rows.values():
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))
    assert sorted(rows) == list(range(len(rows))) and len(rows) < len(lengths)  # short ones share rows


@pytest.mark.parametrize("name", ["sst2", "mrpc", "stsb", "cloze"])
def test_packed_batch_gives_every_item_the_answer_it_gets_alone(runs, name):
    from genpt.evaluation import predict_encoded

    served = load_served(runs[name])
    ft = served.finetuned
    words = "the film was a gorgeous witty moving story of love and war told with care".split()
    texts = [" ".join(words[: 1 + (7 * i) % len(words)]) for i in range(9)]
    width = {"classification": 1, "similarity": 2, "multiple_choice": 3}[ft.task.transform]
    examples = [Example(tuple(texts[(i + j) % len(texts)] for j in range(width)), None, "x") for i in range(len(texts))]
    items = [encode_example(ft.task, e, ft.tokenizer, ft.max_len) for e in examples]
    together = classify_batch(served, items)
    for item, (predicted, probs) in zip(items, together, strict=True):
        alone, alone_probs = predict_encoded(ft.model, [item], ft.task.target, ft.tokenizer.pad_id)
        assert predicted == pytest.approx(alone[0], abs=1e-5)
        if alone_probs is not None:
            assert probs == pytest.approx(alone_probs[0], abs=1e-5)


def test_bfloat16_weights_give_close_probabilities_and_still_generate(runs):
    texts = ["a gorgeous, witty film", "dull and far too long"]
    with running(runs["sst2"]) as url:
        full = post(url, "/v1/classify", {"inputs": texts}).json()["results"]
    with running(runs["sst2"], dtype="bfloat16") as url:
        half = post(url, "/v1/classify", {"inputs": texts}).json()["results"]
        assert httpx.get(url + "/v1/model").json()["dtype"] == "bfloat16"
    for a, b in zip(full, half, strict=True):
        assert list(b["probabilities"].values()) == pytest.approx(list(a["probabilities"].values()), abs=0.02)
    with running(runs["lm"], dtype="bfloat16", threads=1) as url:
        r = post(url, "/v1/completions", {"model": "lm", "prompt": "KING", "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 8
