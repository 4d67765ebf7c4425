"""genpt.kernels.chunked_loss's compiled twin: under bfloat16 autocast each chunk's softmax and gradient in one
Inductor loop give the loss and gradients of the eager chunks, skipping ignored targets; it steps aside in
float32, without gradients, where the loop does not compile, and where the measurement says it is slower."""


import pytest
import torch
import torch.nn.functional as F

from genpt import kernels
from genpt.kernels import chunked_loss as lm
from genpt.kernels import inductor, select
from genpt.labels import IGNORE_INDEX

needs_compiler = pytest.mark.skipif(not lm.loop_compiles(), reason="Inductor cannot compile on this machine")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 rows (which do not divide the inputs' 40), so that small inputs take the chunked path."""
    monkeypatch.setattr(lm, "MIN_ROWS", 7)
    monkeypatch.setattr(lm, "CHUNK_ELEMENTS", 1)


def inputs():
    torch.manual_seed(0)
    h = torch.randn(40, 16, requires_grad=True)
    w = (torch.randn(97, 16) * 0.5).requires_grad_()
    t = torch.randint(0, 97, (40,))
    t[[3, 17, 39]] = IGNORE_INDEX
    return h, w, t


def loss_and_grads(fn, h, w, t):
    h.grad = w.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(h, w, t, 97)
    (2.5 * loss).backward()
    return loss.detach(), h.grad.clone(), w.grad.clone()


@needs_compiler
def test_the_compiled_chunks_give_the_eager_chunks_loss_and_gradients(small_chunks):
    h, w, t = inputs()
    assert lm.fused_applies(h, w, t, 97) is False  # outside autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lm.fused_applies(h, w, t, 97)
    fused = loss_and_grads(lm.chunked_fused_lm_loss, h, w, t)
    eager = loss_and_grads(lm.chunked_mm_lm_loss, h, w, t)
    torch.testing.assert_close(fused[0], eager[0], rtol=1e-6, atol=1e-6)
    for a, b in zip(fused[1:], eager[1:], strict=True):  # the same bfloat16 products on both sides
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-4)
    assert torch.all(fused[1][[3, 17, 39]] == 0)  # ignored positions get no gradient
    hd, wd = h.detach().double(), w.detach().double()
    ref = F.cross_entropy(hd @ wd.t(), t, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(fused[0].double(), ref, rtol=2e-2, atol=2e-2)  # bfloat16 products


def test_it_steps_aside_in_float32_and_without_gradients(small_chunks):
    h, w, t = inputs()
    assert not lm.fused_applies(h, w, t, 97)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not lm.fused_applies(h.detach(), w, t, 97)
        with torch.no_grad():
            assert not lm.fused_applies(h, w, t, 97)
        assert kernels.PATHS["lm_loss"].choose(h.detach(), w, t, 97).name != "chunked_fused"


def test_falls_back_to_the_eager_chunks_when_compiling_fails(small_chunks, broken_compiler):
    h, w, t = inputs()
    fused = loss_and_grads(lm.chunked_fused_lm_loss, h, w, t)
    eager = loss_and_grads(lm.chunked_mm_lm_loss, h, w, t)
    for a, b in zip(fused, eager, strict=True):
        assert torch.equal(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not lm.fused_applies(h, w, t, 97)  # and it is not offered again
        assert kernels.PATHS["lm_loss"].choose(h, w, t, 97).name != "chunked_fused"


def test_the_measured_choice_keeps_the_eager_chunks_when_the_loop_is_slower(small_chunks, tmp_path, monkeypatch):
    monkeypatch.setattr(inductor, "_ready", {("loss", torch.bfloat16): True})  # as on a machine that compiles
    timer = lambda applicable, args: {name: 2.0 if name == "chunked_fused" else 1.0 for name in applicable}  # noqa: E731
    saved = select.use(select.Selector("measure", select.Cache(tmp_path / "c.json"), timer))
    try:
        h, w, t = inputs()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert kernels.PATHS["lm_loss"].choose(h, w, t, 97).name != "chunked_fused"
    finally:
        select.use(saved)
