"""The optimizers a run can choose (`train.optimizer`): GPT-1's AdamW, or Muon for the blocks' matrices.

Muon (Jordan et al., 2024) orthogonalises each matrix's momentum before the step, which trains
Transformer matrices in fewer tokens than AdamW. It is defined for 2-D hidden matrices only, so the
embeddings (tied to the LM head), positions, biases, LayerNorm gains and any task head stay on AdamW.
Both halves follow the same schedule: Muon's step is rescaled to AdamW's RMS (Moonshot's
`match_rms_adamw`, "Muon is Scalable for LLM Training"), so a rate tuned for AdamW carries over;
`train.muon_lr` gives the matrices a peak of their own (each group's `lr_scale` times the schedule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genpt.config import TrainConfig
from genpt.errors import GenptError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only (GPT-1's `vector_l2=False`): never biases, LayerNorm gains or 1-D tensors."""
    decay, no_decay = [], []
    for p in {id(p): p for p in model.parameters() if p.requires_grad}.values():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer | MuonWithAdamW:
    """The optimizer `cfg.optimizer` names, over every trainable parameter of `model`."""
    if cfg.optimizer == "muon":
        return MuonWithAdamW(model, cfg, device)
    return adamw(param_groups(model, cfg.weight_decay), cfg, device)


def set_learning_rate(optimizer: torch.optim.Optimizer | MuonWithAdamW, lr: float) -> None:
    """The schedule's rate for this step, times each group's `lr_scale` (Muon's own peak, train.muon_lr)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def adamw(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (GPT-1's modified L2 with vector_l2 off)."""
    return torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=device.type in ("cuda", "cpu"),  # one kernel per step instead of ~10 per tensor
    )


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The 2-D weights inside the Transformer blocks (`h.N.`), the ones Muon is made for."""
    found: dict[int, nn.Parameter] = {}
    for name, p in model.named_parameters():
        if p.requires_grad and p.dim() == 2 and "h" in name.split(".")[:-2]:
            found[id(p)] = p
    return list(found.values())


class MuonWithAdamW:
    """Muon on the blocks' matrices and AdamW on the rest, with the interface of one `torch.optim` optimizer.

    `param_groups` lists both halves' groups (Muon's first), so setting each group's "lr" schedules
    both; `state_dict` numbers parameters in that same order, the layout the checkpoint code expects.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device):
        matrices = hidden_matrices(model)
        if not matrices:
            raise GenptError("train.optimizer=muon: the model has no Transformer block matrices; "
                             "use train.optimizer=adamw")
        taken = {id(p) for p in matrices}
        rest = [{**g, "params": [p for p in g["params"] if id(p) not in taken]}
                for g in param_groups(model, cfg.weight_decay)]
        self.scale = (cfg.muon_lr or cfg.lr) / cfg.lr
        self.muon = torch.optim.Muon([{"params": matrices, "lr_scale": self.scale}], lr=cfg.lr * self.scale,
                                     weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum,
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = adamw(rest, cfg, device)
        self.parts = (self.muon, self.adamw)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Both parts' groups, Muon's first; live, since loading a state dict replaces a part's groups."""
        return [g for part in self.parts for g in part.param_groups]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        if closure is not None:
            raise ValueError("MuonWithAdamW takes no closure")
        for part in self.parts:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """One state dict in `torch.optim`'s layout: parameters numbered across both parts in order."""
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for part in self.parts:
            sd = part.state_dict()
            state.update({offset + int(i): s for i, s in sd["state"].items()})
            groups += [{**g, "params": [offset + int(i) for i in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in part.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"it has {len(groups)} parameter groups, Muon with AdamW {len(self.param_groups)}: "
                             "was it saved with another train.optimizer?")
        offset, start = 0, 0
        for part in self.parts:
            mine = groups[start:start + len(part.param_groups)]
            start += len(part.param_groups)
            ids = {int(i) for g in mine for i in g["params"]}
            part.load_state_dict({
                "state": {int(i) - offset: s for i, s in state_dict["state"].items() if int(i) in ids},
                "param_groups": [{**g, "params": [int(i) - offset for i in g["params"]]} for g in mine],
            })
            offset += len(ids)
        for group in self.muon.param_groups:  # this run's train.muon_lr, not the saved run's
            group["lr_scale"] = self.scale
