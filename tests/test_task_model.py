"""The task heads against Hugging Face's OpenAIGPTDoubleHeadsModel, and the similarity head's symmetry."""

import pytest
import torch

from genpt import ModelConfig
from genpt.model import GPTForTask
from genpt.objectives import combined_loss, task_loss

transformers = pytest.importorskip("transformers")

SHAPE = dict(vocab_size=61, n_ctx=20, n_embd=32, n_layer=2, n_head=4)
CONV1D = ("c_attn", "c_proj", "c_fc")


def test_multiple_choice_and_lm_logits_match_hf_double_heads():
    torch.manual_seed(0)
    config = transformers.OpenAIGPTConfig(vocab_size=61, n_positions=20, n_embd=32, n_layer=2, n_head=4)
    hf = transformers.OpenAIGPTDoubleHeadsModel(config).eval()
    model = GPTForTask(ModelConfig(**SHAPE), "multiple_choice", 1).eval()
    state = {}
    for k, v in hf.state_dict().items():
        if k.startswith("transformer."):
            name = "gpt." + k.removeprefix("transformer.")
            state[name] = v.t() if name.endswith(".weight") and any(c in name for c in CONV1D) else v
        elif k.startswith("multiple_choice_head.summary."):
            state["head.linear." + k.rsplit(".", 1)[1]] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == [] and missing == ["gpt.lm_head.weight"]

    ids = torch.randint(0, 61, (3, 4, 15))  # 3 examples, 4 answers each
    extract = torch.randint(5, 15, (3, 4))
    with torch.no_grad():
        ref = hf(ids, mc_token_ids=extract)
        ours = model(ids, extract)
        lm = model.gpt(ids.view(12, 15)).logits.view(3, 4, 15, 61)
    assert (ours.logits - ref.mc_logits).abs().max().item() <= 1e-5
    assert (lm - ref.logits).abs().max().item() <= 1e-5


def test_similarity_head_is_symmetric_in_its_two_inputs():
    model = GPTForTask(ModelConfig(**SHAPE), "similarity", 3).eval()
    ab = torch.randint(5, 61, (2, 12))
    ba = torch.randint(5, 61, (2, 9))
    width = 12
    pad = torch.zeros(2, width - 9, dtype=torch.long)
    ids = torch.stack([ab, torch.cat([ba, pad], 1)], dim=1)  # (B, 2, T): the two orderings
    swapped = ids.flip(1)
    extract = torch.tensor([[11, 8], [11, 8]])
    with torch.no_grad():
        a = model(ids, extract).logits
        b = model(swapped, extract.flip(1)).logits
    assert torch.allclose(a, b, atol=1e-6)


def test_padding_after_the_extract_token_changes_nothing():
    model = GPTForTask(ModelConfig(**SHAPE), "classification", 2).eval()
    ids = torch.randint(5, 61, (1, 1, 10))
    padded = torch.cat([ids, torch.full((1, 1, 6), 4)], dim=2)
    extract = torch.tensor([[9]])
    labels = ids.clone()
    labels_padded = torch.cat([labels, torch.full((1, 1, 6), -100)], dim=2)
    with torch.no_grad():
        a = model(ids, extract, labels)
        b = model(padded, extract, labels_padded)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert torch.allclose(a.lm_loss, b.lm_loss, atol=1e-6)


def test_l3_is_l2_plus_lambda_l1():
    logits = torch.tensor([[2.0, 0.5], [0.1, 0.3]])
    labels = torch.tensor([0, 1])
    l2 = task_loss("class", logits, labels)
    assert torch.allclose(l2, torch.nn.functional.cross_entropy(logits, labels))
    l1 = torch.tensor(3.0)
    assert combined_loss(l2, l1, 0.5).item() == pytest.approx(l2.item() + 1.5)
    assert combined_loss(l2, l1, 0.0).item() == pytest.approx(l2.item())
    scores = torch.tensor([[1.0], [3.0]])
    assert task_loss("score", scores, torch.tensor([2.0, 2.0])).item() == pytest.approx(1.0)
