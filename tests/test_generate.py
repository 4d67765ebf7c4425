"""Sampling: the cache and the padding change nothing, filters keep what they promise, seeds repeat."""

import pytest
import torch

from genpt import GPT, ModelConfig
from genpt.generate import filter_logits, generate

CONFIG = ModelConfig(vocab_size=50, n_ctx=16, n_embd=32, n_layer=2, n_head=2)
# At the default init (std 0.02) a tiny model's next token hardly depends on the tokens before the last,
# so a wrong window or a leak from the padding would go unseen; weights at std 0.5 make it depend on them.
SHARP = ModelConfig(vocab_size=50, n_ctx=16, n_embd=32, n_layer=2, n_head=2, initializer_range=0.5)


def greedy_without_cache(model, ids, n):
    """The reference: the whole window (the last n_ctx tokens) through the model at every step."""
    for _ in range(n):
        logits = model(ids[:, -model.config.n_ctx:]).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.slow
def test_greedy_with_cache_equals_recomputing_everything_even_past_the_context():
    model = GPT(SHARP).eval()
    prompt = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        expected = greedy_without_cache(model, prompt, 30)  # 35 tokens > n_ctx: the window slides
    out = generate(model, prompt, 30, temperature=0)
    assert torch.equal(out, expected)
    assert len(set(out[0, 5:].tolist())) > 3  # a model stuck on one token would prove nothing


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [(1, 7, 12, 4), (3, 20)])  # 20 > n_ctx: the window slides at once
def test_ragged_batch_generates_what_each_prompt_generates_alone(lengths):
    model = GPT(SHARP).eval()
    prompts = [torch.randint(0, 50, (n,)).tolist() for n in lengths]
    batched = generate(model, prompts, 25, temperature=0)  # every row crosses n_ctx, each at its own step
    for prompt, row in zip(prompts, batched, strict=True):
        alone = generate(model, torch.tensor([prompt]), 25, temperature=0)[0].tolist()
        with torch.no_grad():
            reference = greedy_without_cache(model, torch.tensor([prompt]), 25)[0].tolist()
        assert row == alone == reference


def test_left_padding_changes_no_hidden_state():
    """Row 0 is 3 tokens behind 6 of padding, row 1 fills all 9 columns; then one cached step each."""
    model = GPT(SHARP).eval()
    short, long, step = torch.randint(0, 50, (1, 3)), torch.randint(0, 50, (1, 9)), torch.tensor([[11], [12]])
    ids = torch.cat([torch.cat([torch.full((1, 6), 7), short], dim=1), long])  # padded with a real id
    valid = torch.arange(10) >= torch.tensor([[6], [0]])  # 9 columns and the step's
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    mask = causal & (valid[:, None, :9] | ~valid[:, :9, None])
    positions = (valid.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        h, cache = model.hidden(ids, positions=positions[:, :9], attn_mask=mask[:, None])
        h_step, _ = model.hidden(step, cache, positions=positions[:, 9:], attn_mask=valid[:, None, None, :])
        h_short, cache_short = model.hidden(short)
        h_short_step, _ = model.hidden(step[:1], cache_short)
        h_long, cache_long = model.hidden(long)
        h_long_step, _ = model.hidden(step[1:], cache_long)
    torch.testing.assert_close(h[0, 6:], h_short[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(h[1], h_long[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(h_step[0], h_short_step[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(h_step[1], h_long_step[0], rtol=0, atol=1e-5)


def test_a_row_stops_at_end_of_text_and_the_others_go_on():
    model = GPT(SHARP).eval()
    prompts = [[3, 4, 5], [9]]
    alone = [generate(model, [p], 12, temperature=0)[0] for p in prompts]
    eos = alone[0][5]  # the first row's third new token
    assert eos not in alone[1][1:]
    out = generate(model, prompts, 12, temperature=0, eos_id=eos)
    assert out[0] == alone[0][:6]
    assert out[1] == alone[1]


def test_same_seed_same_sample():
    model = GPT(CONFIG)
    prompt = torch.tensor([[1, 2, 3]])
    a = generate(model, prompt, 10, top_k=5, generator=torch.Generator().manual_seed(7))
    b = generate(model, prompt, 10, top_k=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.slow
def test_same_seed_same_sample_for_a_ragged_batch():
    model = GPT(SHARP)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10]]

    def sample(seed):
        return generate(model, prompts, 20, temperature=0.9, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


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


def test_an_empty_prompt_is_refused_by_its_index():
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(GPT(CONFIG), [[1], []], 3)


def test_greedy_matches_hf_openai_gpt_generate():
    transformers = pytest.importorskip("transformers")
    model = GPT(SHARP).eval()
    hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
        vocab_size=SHARP.vocab_size, n_positions=SHARP.n_ctx, n_embd=SHARP.n_embd, n_layer=SHARP.n_layer,
        n_head=SHARP.n_head)).eval()
    conv = ("c_attn.weight", "c_proj.weight", "c_fc.weight")  # HF's Conv1D stores (in, out)
    hf.transformer.load_state_dict({k: v.t() if k.endswith(conv) else v for k, v in model.state_dict().items()
                                    if k != "lm_head.weight"}, strict=False)
    hf.tie_weights()
    prompt = torch.randint(0, 50, (1, 4))
    ref = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                      pad_token_id=0)
    assert torch.equal(generate(model, prompt, 12, temperature=0), ref)
