"""Sampling: the cache changes nothing, filters keep what they promise, seeds repeat."""

import torch

from genpt import GPT, ModelConfig
from genpt.generate import filter_logits, generate

CONFIG = ModelConfig(vocab_size=50, n_ctx=16, n_embd=32, n_layer=2, n_head=2)


def greedy_without_cache(model, ids, n):
    for _ in range(n):
        logits = model(ids[:, -model.config.n_ctx:]).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


def test_greedy_with_cache_equals_recomputing_everything_even_past_the_context():
    model = GPT(CONFIG).eval()
    prompt = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        expected = greedy_without_cache(model, prompt, 30)  # 35 tokens > n_ctx: the window slides
    assert torch.equal(generate(model, prompt, 30, temperature=0), expected)


def test_same_seed_same_sample():
    model = GPT(CONFIG)
    prompt = torch.tensor([[1, 2, 3]])
    a = generate(model, prompt, 10, top_k=5, generator=torch.Generator().manual_seed(7))
    b = generate(model, prompt, 10, top_k=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_top_k_keeps_k_and_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).sum().item() == 2
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.01)).sum().item() == 1


def test_generation_stops_at_end_of_text():
    model = GPT(CONFIG).eval()
    with torch.no_grad():
        first = model(torch.tensor([[3]])).logits[0, -1].argmax().item()
    out = generate(model, torch.tensor([[3]]), 10, temperature=0, eos_id=first)
    assert out[0].tolist() == [3, first]
