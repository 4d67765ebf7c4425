"""The GPT-1 Transformer decoder: post-LN blocks, GELU, learned positions, an LM head tied to the embedding.

Modules are defined in the order data flows through them. The model knows nothing of training. Its
linears, dropouts, attention, GELU and LM loss come from genpt.kernels, which runs a measured fast path where
one applies and plain PyTorch elsewhere: the same numbers either way (tests/test_kernels_*.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genpt import kernels
from genpt.config import ModelConfig
from genpt.kernels import Dropout, Linear

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


def activation(name: str):
    """GPT-1 used the tanh approximation of GELU; the others are for experiments."""
    if name == "gelu":
        return kernels.gelu
    return {"gelu_exact": F.gelu, "relu": F.relu, "silu": F.silu}[name]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = Dropout(config.resid_pdrop)

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Causal over `past` keys and these; `attn_mask` (B, 1, T, past + T), True where a query may attend,
        replaces the causal mask."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = kernels.attention(q, k, v, self.attn_pdrop if self.training else 0.0, attn_mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, config.inner_dim)
        self.act = activation(config.afn)
        self.c_proj = Linear(config.inner_dim, config.n_embd)
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """GPT-1's post-LN residual block: normalise after adding, not before (unlike GPT-2)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, past=None, attn_mask: torch.Tensor | None = None):
        a, present = self.attn(x, past, attn_mask)
        x = self.ln_1(x + a)
        x = self.ln_2(x + self.mlp(x))
        return x, present


@dataclass
class GPTOutput:
    """What a forward pass returns; `loss` is set when labels were given, `cache` when asked for."""

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None
    cache: KVCache | None = None


class GPT(nn.Module):
    """The decoder with its tied LM head. `model(ids, labels=ids)` gives logits and the LM loss (L1)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.tokens_embed = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.positions_embed = nn.Embedding(config.n_ctx, config.n_embd)
        self.drop = Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.lm_head = Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.tokens_embed.weight  # tied, as in GPT-1
        self.apply(self._init_weights)
        with torch.no_grad():  # padding rows: no id embeds to them and no logit reads them
            self.tokens_embed.weight[config.vocab_size :].zero_()

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-1: every weight matrix and embedding ~ N(0, 0.02), biases zero, LayerNorm identity."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(
        self,
        input_ids: torch.Tensor,
        cache: KVCache | None = None,
        *,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Final hidden states (B, T, n_embd), and the key/value cache extended by these tokens.

        Left-padded batches (genpt.generate) pass each token's `positions` (B, T) and an `attn_mask`
        (B, 1, T, cached + T) that hides the padding; by default positions follow the cache.
        """
        T = input_ids.size(1)
        start = cache[0][0].size(2) if cache else 0
        if start + T > self.config.n_ctx:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds the model's context of {self.config.n_ctx}"
            )
        if positions is None:
            positions = torch.arange(start, start + T, device=input_ids.device)
        x = self.drop(self.tokens_embed(input_ids) + self.positions_embed(positions))
        present: KVCache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, cache[i] if cache else None, attn_mask)
            present.append(kv)
        return x, present

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The tied head's scores of hidden states `h` over the vocabulary (padding rows left out)."""
        return self.lm_head(h)[..., : self.config.vocab_size]

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        use_cache: bool = False,
        return_hidden: bool = False,
        return_logits: bool = True,
    ) -> GPTOutput:
        """Labels follow Hugging Face's convention: `labels[t]` is the target of position t-1.

        With labels, logits are computed only where a prediction is scored, which avoids
        materialising the (B, T, vocab) tensor for the last position. Training, which needs only the
        loss, passes `return_logits=False`: the loss then never holds all the logits at once
        (genpt.kernels.chunked_loss) and `logits` is None.
        """
        h, present = self.hidden(input_ids, cache)
        logits, loss = scored_logits(self, h, labels, return_logits)
        return GPTOutput(
            logits=logits,
            loss=loss,
            hidden_states=h if return_hidden else None,
            cache=present if use_cache else None,
        )


def scored_logits(lm: nn.Module, h: torch.Tensor, labels: torch.Tensor | None,
                  return_logits: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A language model's (logits, loss) from its final states `h`: the forward pass of GPT and the LSTM."""
    vocab = lm.config.vocab_size
    if labels is None:
        return lm.logits(h), None
    if not return_logits:
        return None, kernels.lm_loss(h[:, :-1], lm.lm_head.weight, labels[:, 1:], vocab)
    logits = lm.logits(h[:, :-1])
    return logits, kernels.cross_entropy(logits, labels[:, 1:], vocab)


class TaskHead(nn.Module):
    """The only new parameters of fine-tuning: a linear layer on the extract token's final state."""

    def __init__(self, n_embd: int, n_out: int, pdrop: float = 0.1, std: float = 0.02):
        super().__init__()
        self.dropout = Dropout(pdrop)
        self.linear = nn.Linear(n_embd, n_out)
        nn.init.normal_(self.linear.weight, std=std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(state))


@dataclass
class TaskOutput:
    logits: torch.Tensor  # (B, n_out) for classes and scores, (B, choices) for multiple choice
    lm_loss: torch.Tensor | None  # L1 on the task's own input tokens, when lm_labels were given


class GPTForTask(nn.Module):
    """A GPT (or a `backbone` with its interface) with a task head, fed by `genpt.data.transforms`.

    Each example is S sequences (S = 1, 2 for similarity, k for multiple choice). Similarity adds the
    two orderings' extract states before the head; multiple choice scores every answer with a
    one-output head and compares the scores across answers.
    """

    def __init__(self, config: ModelConfig, transform: str, n_out: int, clf_pdrop: float = 0.1,
                 backbone: nn.Module | None = None):
        super().__init__()
        self.transform = transform
        self.gpt = backbone if backbone is not None else GPT(config)  # any LM with GPT's interface (genpt.lstm)
        self.head = TaskHead(config.n_embd, 1 if transform == "multiple_choice" else n_out, clf_pdrop,
                             config.initializer_range)

    def forward(
        self, input_ids: torch.Tensor, extract_index: torch.Tensor, lm_labels: torch.Tensor | None = None
    ) -> TaskOutput:
        B, S, T = input_ids.shape
        h, _ = self.gpt.hidden(input_ids.view(B * S, T))
        logits = self.head_logits(h[torch.arange(B * S, device=h.device), extract_index.reshape(-1)].view(B, S, -1))
        lm_loss_value = None
        if lm_labels is not None:
            lm_loss_value = kernels.lm_loss(h[:, :-1], self.gpt.lm_head.weight, lm_labels.reshape(B * S, T)[:, 1:],
                                    self.gpt.config.vocab_size)
        return TaskOutput(logits, lm_loss_value)

    def head_logits(self, state: torch.Tensor) -> torch.Tensor:
        """The head's outputs from the extract tokens' final states (B, S, n_embd), however they were computed
        (genpt.serve packs several sequences into one row)."""
        if self.transform == "similarity":
            return self.head(state.sum(dim=1))
        if self.transform == "multiple_choice":
            return self.head(state).squeeze(-1)
        return self.head(state[:, 0])


__all__ = ["GPT", "GPTForTask", "GPTOutput", "TaskHead", "TaskOutput", "Block", "KVCache"]
