"""genpt.kernels.onednn: float32 linear layers through oneDNN compute what F.linear computes, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from genpt import kernels
from genpt.kernels import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch build has no oneDNN linear op")


@pytest.mark.parametrize("shape", [(3, 17, 24, 40), (1, 5, 40, 24), (2, 9, 64, 256)])  # B, T, in, out
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_f_linear_values_and_gradients(shape, bias):
    B, T, n_in, n_out = shape
    torch.manual_seed(0)
    x = torch.randn(B, T, n_in, requires_grad=True)
    w = torch.randn(n_out, n_in, requires_grad=True)
    b = torch.randn(n_out, requires_grad=True) if bias else None
    grad = torch.randn(B, T, n_out)
    ours = kernels.linear(x, w, b)
    ours.backward(grad)
    got = [x.grad, w.grad] + ([b.grad] if bias else [])
    inputs = [t.detach().double().requires_grad_() for t in [x, w] + ([b] if bias else [])]
    ref = F.linear(*inputs)
    ref.backward(grad.double())
    assert ours.grad_fn is not None and "OneDnn" in type(ours.grad_fn).__name__  # the fast path was taken
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(got, inputs, strict=True):
        torch.testing.assert_close(g.double(), r.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("linear", [onednn.onednn_linear, onednn.onednn_linear_direct])
def test_both_orientations_of_the_weight_gradient_give_f_linears_contiguous(linear):
    torch.manual_seed(0)
    x = torch.randn(2, 9, 64, requires_grad=True)
    w = torch.randn(256, 64, requires_grad=True)  # more outputs than inputs: where the two differ
    linear(x, w).backward(torch.ones(2, 9, 256))
    assert onednn.direct_applies(x, w) and w.grad.is_contiguous()
    torch.testing.assert_close(w.grad, torch.ones(18, 256).t() @ x.detach().reshape(18, 64), rtol=1e-5, atol=1e-5)


def test_falls_back_to_f_linear_under_autocast_and_for_other_dtypes():
    x, w = torch.randn(4, 8), torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert kernels.linear(x, w).dtype == torch.bfloat16  # autocast's own (oneDNN bf16) path
    assert kernels.linear(x.double(), w.double()).dtype == torch.float64


def test_linear_module_keeps_nn_linear_state_dict():
    layer = kernels.Linear(8, 4)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}


@pytest.mark.slow
def test_linear_works_under_torch_compile():
    torch.manual_seed(0)
    layer = kernels.Linear(16, 32)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(torch.compile(layer)(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_switching_the_fast_path_off_gives_f_linear():
    x, w = torch.randn(3, 8, requires_grad=True), torch.randn(6, 8)
    with kernels.disable("linear.onednn"):
        y = kernels.linear(x, w)
    assert "OneDnn" not in type(y.grad_fn).__name__
    torch.testing.assert_close(y, F.linear(x, w))
