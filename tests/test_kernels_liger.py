"""train.kernels=liger: liger's LayerNorm and fused linear + cross-entropy give the plain path's loss and
gradients, run on the CPU by Triton's interpreter (TRITON_INTERPRET=1, in a subprocess: Triton reads it
at import) on a tiny GPT with a padded vocabulary, in float32.

Two shims let the interpreter run liger's kernels, and touch neither liger's nor genpt's arithmetic:
Python float arguments become float32 scalars (the interpreter passes them through bare; compiled
Triton makes them scalars), and liger's LayerNorm `rsqrt`, CUDA's libdevice (which the interpreter
lacks), becomes 1/sqrt.

Guarded here: the kernels' arithmetic, forward and backward; which modules are replaced; the -inf
bias that keeps a padded vocabulary out of the softmax; the same parameters and state dict. Not
guarded (a GPU run only): the kernels compiled for a GPU, bfloat16 autocast, Dynamo tracing of
liger's LayerNorm inside torch.compile, and speed.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("liger_kernel", reason="liger-kernel is not installed (pip install -e '.[gpu]')")
pytest.importorskip("triton", reason="Triton is not installed (pip install -e '.[gpu]')")

# float32 throughout: liger and torch differ only in the order of their sums.
LOSS_RTOL = 1e-6
GRAD_ATOL, GRAD_RTOL = 1e-6, 1e-4


def interpreter_shims() -> None:
    import numpy as np
    import triton.language as tl
    from liger_kernel.ops import layer_norm
    from triton.runtime import interpreter

    convert = interpreter._implicit_cvt

    def scalar(arg):
        if isinstance(arg, float):
            return tl.tensor(interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32), tl.float32)
        return convert(arg)

    interpreter._implicit_cvt = scalar
    layer_norm.rsqrt = lambda x: 1.0 / tl.sqrt(x)


def compare() -> dict:
    """Run in the subprocess: the plain model and its liger copy, one training step's loss and gradients."""
    import copy

    import torch

    interpreter_shims()
    from genpt.config import ModelConfig
    from genpt.kernels import backends
    from genpt.model import GPT

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=100, n_ctx=16, n_embd=32, n_layer=2, n_head=2, embd_pdrop=0.0,
                         attn_pdrop=0.0, resid_pdrop=0.0, pad_vocab_multiple=64)
    plain = GPT(config)
    with torch.no_grad():  # non-trivial norms and padding rows the softmax must not see
        for name, p in plain.named_parameters():
            if "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
        plain.tokens_embed.weight[config.vocab_size:] = 1.0
    fused = copy.deepcopy(plain)
    applied = backends.apply_backends(fused, "liger", False, torch.device("cpu"))
    ids = torch.randint(0, config.vocab_size, (3, config.n_ctx))
    labels = ids.clone()
    labels[0, 5:9] = -100  # ignored positions
    out = {"applied": applied, "types": sorted({type(m).__module__ + "." + type(m).__name__ for m in fused.modules()}),
           "same_keys": list(plain.state_dict()) == list(fused.state_dict())}
    for key, model in (("plain", plain), ("liger", fused)):
        loss = model(ids, labels=labels, return_logits=False).loss
        loss.backward()
        out[key] = {"loss": loss.item(), "grads": {n: p.grad.tolist() for n, p in model.named_parameters()}}
    return out


@pytest.mark.slow
def test_liger_gives_the_plain_loss_and_gradients_under_tritons_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["applied"] == ["liger (4 layer norms, fused linear + cross-entropy loss)"]
    assert "genpt.kernels.liger.LayerNorm" in out["types"]
    assert "torch.nn.modules.normalization.LayerNorm" not in out["types"]
    assert out["same_keys"]
    assert out["liger"]["loss"] == pytest.approx(out["plain"]["loss"], rel=LOSS_RTOL)
    import torch

    for name, grad in out["plain"]["grads"].items():
        torch.testing.assert_close(torch.tensor(out["liger"]["grads"][name]), torch.tensor(grad),
                                   atol=GRAD_ATOL, rtol=GRAD_RTOL, msg=lambda m, name=name: f"{name}: {m}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    print(json.dumps(compare()))
