"""genpt.kernels.fused_gelu: the compiled x * sigmoid(2u) loops compute GPT-1's tanh GELU in bfloat16,
and in float32 while training, values and gradients, and the plain kernel serves wherever they cannot (no
compiler, other inputs)."""


import pytest
import torch
import torch.nn.functional as F

from genpt import kernels
from genpt.kernels import fused_gelu, inductor, select


@pytest.fixture
def registry_order():
    """GENPT_KERNELS=first without conftest's gelu=plain: the fused path runs wherever it applies."""
    saved = select.use(select.Selector("first", select.Cache(None)))
    yield
    select.use(saved)


needs_compiler = pytest.mark.skipif(not fused_gelu.compiled(torch.bfloat16),
                                    reason="Inductor cannot compile here (no C++ compiler?): the plain GELU serves")


@needs_compiler
@pytest.mark.parametrize("shape", [(2, 7, 96), (3, 17, 1536), (5,)])
def test_values_and_gradients_match_the_tanh_gelu_in_float64(registry_order, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3).bfloat16().requires_grad_()
    grad = torch.randn(shape).bfloat16()
    ours = kernels.gelu(x)
    ours.backward(grad)
    assert "FusedGelu" in type(ours.grad_fn).__name__  # the fast path was taken
    ref_x = x.detach().double().requires_grad_()
    ref = F.gelu(ref_x, approximate="tanh")
    ref.backward(grad.double())
    torch.testing.assert_close(ours.double(), ref, rtol=8e-3, atol=1e-5)  # float32 arithmetic, one rounding
    torch.testing.assert_close(x.grad.double(), ref_x.grad, rtol=1.6e-2, atol=1e-2)


@needs_compiler
def test_bfloat16_matches_pytorchs_kernel_to_its_rounding(registry_order):
    torch.manual_seed(1)
    x = torch.randn(4, 33, 384).bfloat16().requires_grad_()
    grad = torch.randn(4, 33, 384).bfloat16()
    ours = kernels.gelu(x)
    ours.backward(grad)
    ref_x = x.detach().clone().requires_grad_()
    ref = F.gelu(ref_x, approximate="tanh")
    ref.backward(grad)
    assert ours.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(ours, ref, rtol=1.6e-2, atol=1e-2)  # one bfloat16 step: both round float32
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1.6e-2, atol=1e-2)


@needs_compiler
def test_float32_training_matches_pytorchs_kernel_to_float32_rounding(registry_order):
    torch.manual_seed(2)
    x = (torch.randn(4, 33, 384) * 3).requires_grad_()
    grad = torch.randn(4, 33, 384)
    ours = kernels.gelu(x)
    ours.backward(grad)
    assert "FusedGelu" in type(ours.grad_fn).__name__
    ref_x = x.detach().clone().requires_grad_()
    ref = F.gelu(ref_x, approximate="tanh")
    ref.backward(grad)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)


@needs_compiler
def test_extreme_inputs_stay_finite_where_the_plain_kernel_does(registry_order):
    x = torch.tensor([-1e4, -50.0, -10.0, 0.0, 10.0, 50.0, 1e4], dtype=torch.bfloat16, requires_grad=True)
    y = kernels.gelu(x)
    y.sum().backward()
    torch.testing.assert_close(y, F.gelu(x.detach(), approximate="tanh"))
    torch.testing.assert_close(x.grad.float(), torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]), atol=1e-6, rtol=0)


def test_falls_back_to_the_plain_gelu_when_compiling_fails(registry_order, broken_compiler):
    x = torch.randn(3, 8, 64, dtype=torch.bfloat16, requires_grad=True)
    y = kernels.gelu(x)  # chosen (the registry's first), fails to compile, answers with PyTorch's GELU
    assert "Gelu" in type(y.grad_fn).__name__ and "Fused" not in type(y.grad_fn).__name__
    assert torch.equal(y, F.gelu(x, approximate="tanh"))
    assert not fused_gelu.compiled(torch.bfloat16) and not fused_gelu.applies(x)
    assert kernels.PATHS["gelu"].choose(torch.randn(2, 4, 64).bfloat16()).name == "plain"  # and is not offered again


def test_other_inputs_take_the_plain_path(registry_order):
    wide = torch.randn(4, 6, dtype=torch.float64)
    assert not fused_gelu.applies(wide)
    assert not fused_gelu.applies(torch.randn(4, 6))  # float32 without gradients: a compile for 2 ms
    assert fused_gelu.applies(torch.randn(4, 6, requires_grad=True))  # float32 in training
    with torch.no_grad():
        assert not fused_gelu.applies(torch.randn(4, 6, requires_grad=True))
    assert not fused_gelu.applies(torch.randn(6, 4).bfloat16().t())  # not contiguous
    assert torch.equal(kernels.gelu(wide), F.gelu(wide, approximate="tanh"))


def test_the_measured_choice_keeps_plain_when_the_fused_loop_is_slower(tmp_path, monkeypatch):
    monkeypatch.setattr(inductor, "_ready", {("GELU", torch.bfloat16): True})  # as on a machine that compiles
    timer = lambda applicable, args: {"fused": 2.0, "plain": 1.0}  # noqa: E731
    saved = select.use(select.Selector("measure", select.Cache(tmp_path / "c.json"), timer))
    try:
        assert kernels.PATHS["gelu"].choose(torch.randn(2, 8, 16).bfloat16()).name == "plain"
    finally:
        select.use(saved)
