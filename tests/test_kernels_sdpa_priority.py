"""train.attention_kernel: which fused attention kernel SDPA tries first, as a preference that falls back."""

import pytest
import torch
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends

from genpt.config import ATTENTION_KERNELS, ModelConfig, TrainConfig
from genpt.kernels.sdpa_priority import KERNELS, kernel_order, preferred_attention_kernels
from genpt.model import GPT
from genpt.train.loop import TrainTask, train

TINY = ModelConfig(vocab_size=64, n_ctx=16, n_embd=32, n_layer=2, n_head=2,
                   embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)


def first_kernel() -> SDPBackend:
    return _cur_sdpa_kernel_backends(with_priority=True)[0]


def test_every_named_kernel_is_a_setting():
    assert set(ATTENTION_KERNELS) == {"torch", *KERNELS}


def test_torch_keeps_its_own_order():
    assert kernel_order("torch") is None


@pytest.mark.parametrize("name", list(KERNELS))
def test_a_named_kernel_comes_first_and_every_kernel_stays_enabled(name):
    order = kernel_order(name)
    assert order[0] == KERNELS[name]
    assert len(order) == 4 and set(order) == set(KERNELS.values())  # a preference: the others remain as fall-backs
    assert order[-1] == SDPBackend.MATH or name == "math"  # the math path serves all: nothing after it is reachable


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="attention kernel must be one of torch, cudnn"):
        kernel_order("flash3")


def sdpa_ops_called(choice: str, device: torch.device) -> tuple[set[str], torch.Tensor]:
    """The attention operators a forward pass of the tiny model calls under `choice`'s order, and its loss."""
    torch.manual_seed(0)
    model, ids = GPT(TINY).to(device), torch.randint(0, 64, (2, 16), device=device)
    with preferred_attention_kernels(choice), torch.profiler.profile() as prof, \
            torch.autocast(device.type, torch.bfloat16):
        loss = model(ids, labels=ids).loss
    ops = {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key and e.key.startswith("aten::_")}
    return ops, loss.float()


def test_the_order_is_set_inside_the_context_and_restored_after():
    before = _cur_sdpa_kernel_backends(with_priority=True)
    with preferred_attention_kernels("math"):
        assert first_kernel() == SDPBackend.MATH
    assert _cur_sdpa_kernel_backends(with_priority=True) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the CPU picks its kernel "
                    "in a fixed order (flash, math) that ignores priorities")
def test_the_preferred_kernel_is_the_one_that_runs_on_a_gpu():
    gpu = torch.device("cuda")
    flash_ops, flash_loss = sdpa_ops_called("flash", gpu)
    assert flash_ops == {"aten::_scaled_dot_product_flash_attention"}
    math_ops, math_loss = sdpa_ops_called("math", gpu)
    assert "aten::_scaled_dot_product_flash_attention" not in math_ops
    torch.testing.assert_close(math_loss, flash_loss, rtol=2e-2, atol=2e-2)
    if torch.cuda.get_device_capability()[0] >= 9 and torch.backends.cudnn.version() >= 91500:
        cudnn_ops, cudnn_loss = sdpa_ops_called("cudnn", gpu)
        assert cudnn_ops == {"aten::_scaled_dot_product_cudnn_attention"}
        torch.testing.assert_close(cudnn_loss, flash_loss, rtol=2e-2, atol=2e-2)


def test_the_training_loop_runs_under_the_configured_kernel(tmp_path):
    torch.manual_seed(0)
    firsts, ids = [], torch.randint(0, 64, (2, 16))

    def loss(model, batch):
        firsts.append(first_kernel())
        return model(batch, labels=batch, return_logits=False).loss

    task = TrainTask(micro_batch=lambda i: ids, loss=loss, tokens=lambda batch: batch.numel())
    cfg = TrainConfig(batch_size=2, lr=1e-3, warmup_steps=0, max_steps=2, device="cpu", attention_kernel="math",
                      checkpoint_interval=100)
    train(GPT(TINY), cfg, task, tmp_path, total_steps=2, progress=False)
    assert firsts == [SDPBackend.MATH, SDPBackend.MATH]
    assert first_kernel() != SDPBackend.MATH  # torch's own order again once the run is over
