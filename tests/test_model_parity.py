"""genpt's decoder against Hugging Face's OpenAIGPTLMHeadModel, built locally from a config."""

import pytest
import torch

from genpt import GPT, ModelConfig

transformers = pytest.importorskip("transformers")

SHAPE = dict(vocab_size=97, n_ctx=24, n_embd=32, n_layer=3, n_head=4)


def hf_reference(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.OpenAIGPTConfig(
        vocab_size=SHAPE["vocab_size"], n_positions=SHAPE["n_ctx"], n_embd=SHAPE["n_embd"],
        n_layer=SHAPE["n_layer"], n_head=SHAPE["n_head"],
    )
    model = transformers.OpenAIGPTLMHeadModel(config)
    # Random, non-trivial LayerNorm parameters so that a swapped ln_1/ln_2 would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
    return model.eval()


def genpt_from_hf(hf) -> GPT:
    model = GPT(ModelConfig(**SHAPE)).eval()
    sd = {}
    for k, v in hf.state_dict().items():
        k = k.removeprefix("transformer.")
        if k == "lm_head.weight":
            continue
        if k.endswith(".weight") and any(s in k for s in ("c_attn", "c_proj", "c_fc")):
            v = v.t()  # HF's Conv1D stores (in, out); nn.Linear stores (out, in)
        sd[k] = v
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert unexpected == [] and missing == ["lm_head.weight"]  # tied to tokens_embed
    return model


def test_logits_match_hf_openai_gpt():
    hf = hf_reference()
    model = genpt_from_hf(hf)
    ids = torch.randint(0, SHAPE["vocab_size"], (3, SHAPE["n_ctx"]))
    with torch.no_grad():
        ref = hf(ids).logits
        ours = model(ids).logits
    assert (ours - ref).abs().max().item() <= 1e-5


def test_lm_loss_and_gradients_match_hf_openai_gpt():
    hf = hf_reference(seed=1)
    model = genpt_from_hf(hf)
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 17))
    ref = hf(ids, labels=ids).loss
    ours = model(ids, labels=ids).loss
    assert torch.allclose(ours, ref, atol=1e-6)
    ref.backward()
    ours.backward()
    ours_grads = dict(model.named_parameters())
    for name, p in hf.named_parameters():
        key = name.removeprefix("transformer.")
        g_ref = p.grad
        g = ours_grads[key].grad
        if name.endswith(".weight") and any(s in name for s in ("c_attn", "c_proj", "c_fc")):
            g = g.t()
        rel = (g - g_ref).norm() / g_ref.norm().clamp_min(1e-12)
        assert rel.item() <= 1e-4, f"{name}: relative gradient error {rel.item():.2e}"


def test_defaults_are_gpt1():
    c = ModelConfig()
    assert (c.n_layer, c.n_embd, c.n_head, c.n_ctx, c.inner_dim) == (12, 768, 12, 512, 3072)
    assert c.afn == "gelu" and c.embd_pdrop == c.attn_pdrop == c.resid_pdrop == 0.1
    assert c.initializer_range == 0.02


def test_init_is_normal_002_and_head_is_tied():
    model = GPT(ModelConfig(vocab_size=2000, n_ctx=64, n_embd=128, n_layer=2, n_head=4))
    assert model.lm_head.weight is model.tokens_embed.weight
    for name, p in model.named_parameters():
        if p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.002, name
            assert abs(p.mean().item()) < 0.002, name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name


def test_kv_cache_gives_same_logits_as_full_forward():
    model = GPT(ModelConfig(**SHAPE)).eval()
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :7], use_cache=True)
        steps = [out.logits]
        cache = out.cache
        out = model(ids[:, 7:12], cache=cache, use_cache=True)  # several new tokens at once
        steps.append(out.logits)
        cache = out.cache
        for t in range(12, 20):
            out = model(ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    assert (torch.cat(steps, dim=1) - full).abs().max().item() < 1e-5


def test_sequence_longer_than_context_is_refused():
    model = GPT(ModelConfig(**SHAPE))
    with pytest.raises(ValueError, match="exceeds the model's context"):
        model(torch.zeros(1, SHAPE["n_ctx"] + 1, dtype=torch.long))
