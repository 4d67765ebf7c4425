"""genpt.kernels.dropout_masks: cheaper CPU masks that are still Bernoulli(1 - p), unbiased, repeatable, and
differentiable."""

import pytest
import torch

from genpt.kernels import Dropout, dropout
from genpt.kernels.dropout_masks import keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_drop_at_rate_p_and_keep_the_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = dropout(x, p, True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.002  # 1M draws: the standard error is under 0.0005
    assert abs(y.mean().item() - 1.0) < 0.005
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / (65536 - round(p * 65536))))


def test_every_lane_of_the_draw_is_used_and_independent_of_position():
    torch.manual_seed(1)
    keep, _ = keep_mask(torch.Size([400_000, 4]), 0.25)
    rates = 1 - keep.float().mean(dim=0)
    assert torch.all((rates - 0.25).abs() < 0.005), rates


def test_masks_repeat_under_the_same_seed_and_differ_otherwise():
    x = torch.randn(64, 64)
    torch.manual_seed(3)
    a = dropout(x, 0.1, True)
    torch.manual_seed(3)
    b = dropout(x, 0.1, True)
    c = dropout(x, 0.1, True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    x = torch.randn(50, 30, requires_grad=True)
    y = dropout(x, 0.2, True)
    y.backward(torch.ones_like(y))
    scale = 65536 / (65536 - round(0.2 * 65536))
    assert torch.allclose(x.grad, torch.where(y != 0, scale, 0.0))


def test_eval_mode_and_p_zero_are_the_identity():
    x = torch.randn(10)
    layer = Dropout(0.1).eval()
    assert layer(x) is x and dropout(x, 0.0, True) is x
