"""genpt.kernels.chunked_loss: the chunked LM loss gives the plain cross-entropy's value and gradients, skipping ignored
targets, without holding all the logits; the model's two loss paths agree."""

import pytest
import torch
import torch.nn.functional as F

from genpt import kernels
from genpt.config import ModelConfig
from genpt.kernels import chunked_loss as lm
from genpt.kernels import onednn
from genpt.labels import IGNORE_INDEX
from genpt.model import GPT

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch build has no oneDNN linear op")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of one row, so that these small inputs take the chunked path."""
    monkeypatch.setattr(lm, "MIN_ROWS", 1)
    monkeypatch.setattr(lm, "CHUNK_ELEMENTS", 1)


def plain(h, w, t):
    return F.cross_entropy((h @ w.t()).float(), t, ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("other", ["lm_loss.chunked_mm", "lm_loss.chunked"])  # oneDNN's products, then MKL's
@pytest.mark.parametrize("chunk", [1, 7 * 97])  # chunks of 1 row; of 7 rows, which don't divide the 40
def test_value_and_gradients_match_the_plain_cross_entropy(monkeypatch, chunk, other):
    monkeypatch.setattr(lm, "CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    h = torch.randn(40, 16, requires_grad=True)
    w = torch.randn(97, 16, requires_grad=True)
    t = torch.randint(0, 97, (40,))
    t[[3, 17, 39]] = IGNORE_INDEX
    with kernels.disable(other):
        loss = kernels.lm_loss(h, w, t)
    assert "Chunked" in type(loss.grad_fn).__name__
    (2.5 * loss).backward()
    hd, wd = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.cross_entropy(hd @ wd.t(), t, ignore_index=IGNORE_INDEX)
    (2.5 * ref).backward()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h.grad.double(), hd.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.grad.double(), wd.grad, rtol=1e-5, atol=1e-6)
    assert torch.all(h.grad[[3, 17, 39]] == 0)  # ignored positions get no gradient


def test_under_bfloat16_autocast_it_stays_close_to_the_float32_loss():
    torch.manual_seed(0)
    h, w, t = torch.randn(64, 32), torch.randn(200, 32) * 0.1, torch.randint(0, 200, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = kernels.lm_loss(h, w, t)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, plain(h, w, t), rtol=2e-2, atol=2e-2)


def test_plain_path_for_logits_that_fit_in_a_few_chunks(monkeypatch):
    monkeypatch.setattr(lm, "MIN_ROWS", 256)
    h = torch.randn(511, 8, requires_grad=True)
    assert not lm.applies(h, None, None, 40478) and lm.applies(torch.randn(4096, 8), None, None, 40478)


def test_all_targets_ignored_gives_zero_not_nan():
    h, w = torch.randn(8, 8, requires_grad=True), torch.randn(10, 8)
    loss = kernels.lm_loss(h, w, torch.full((8,), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(h.grad == 0)


def test_model_loss_without_logits_equals_the_loss_with_logits():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=300, n_ctx=32, n_embd=32, n_layer=2, n_head=2)).eval()
    ids = torch.randint(0, 300, (3, 32))
    labels = ids.clone()
    labels[0, :10] = IGNORE_INDEX
    with_logits = model(ids, labels=labels)
    model.zero_grad()
    with_logits.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    fused = model(ids, labels=labels, return_logits=False)
    fused.loss.backward()
    assert fused.logits is None
    torch.testing.assert_close(fused.loss, with_logits.loss)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
