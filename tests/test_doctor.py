"""`genpt doctor`: the CPU, and what each fast path and the training precision chose for a model."""

import re

from genpt import cli
from genpt.kernels import select


def test_doctor_names_the_cpu_and_the_choice_of_every_fast_path_met(capsys, tmp_path):
    saved = select.use(select.Selector("linear=plain", select.Cache(tmp_path / "c.json")))
    try:
        assert cli.main(["doctor", "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.n_head=2",
                         "--set", "model.n_ctx=16", "--set", "model.vocab_size=64", "--batch", "2"]) == 0
    finally:
        select.use(saved)
    out = capsys.readouterr().out
    assert "CPU: " in out and "product ceilings" in out and "fp32 MKL" in out and "bf16" in out
    assert re.search(r"^  linear +plain +forced by GENPT_KERNELS", out, re.M)
    assert "attention" in out and "dropout" in out  # dropout 0.1 by default: both have CPU fast paths
    assert "precision for training (train.dtype=auto): " in out and "ms" in out  # which wins depends on the CPU
    assert re.search(r"^host memory.*(faulted [\d,]+ pages|already kept)", out, re.M)
