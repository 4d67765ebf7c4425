"""The paper's LSTM baseline (Table 5, Figure 2): one LSTM layer between tied input and output embeddings.

It has the decoder's interface wherever genpt relies on it (`hidden`, `logits`, `forward` with labels,
`lm_head`, `config`, `num_parameters`), so it pre-trains, fine-tunes with the same task heads and
input transformations, and zero-shots through the same code. When the LSTM is wider than the
embedding, a linear projection brings its states back to the embedding's width, so the output
embedding can be the input one. The paper gives the LSTM's width (2,048) but not its embedding; here
both are settings (`model.lstm_hidden`, `model.n_embd`).
"""

from __future__ import annotations

import torch
from torch import nn

from genpt.config import ModelConfig
from genpt.model import GPTOutput, scored_logits

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h_n, c_n), each (1, B, hidden)


class LSTMLM(nn.Module):
    """Embedding -> dropout -> LSTM -> projection -> dropout -> the tied head. `model(ids, labels=ids)` gives L1."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        hidden = config.lstm_hidden or config.n_embd
        self.tokens_embed = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        # PyTorch's own LSTM initialisation (uniform in +-1/sqrt(hidden)): the paper states none for it.
        self.lstm = nn.LSTM(config.n_embd, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, config.n_embd, bias=False) if hidden != config.n_embd else None
        self.out_drop = nn.Dropout(config.resid_pdrop)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.tokens_embed.weight  # tied, as the decoder's
        with torch.no_grad():
            nn.init.normal_(self.tokens_embed.weight, std=config.initializer_range)
            self.tokens_embed.weight[config.vocab_size :].zero_()  # padding rows, as in genpt.model.GPT
            if self.proj is not None:
                nn.init.normal_(self.proj.weight, std=config.initializer_range)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(
        self,
        input_ids: torch.Tensor,
        cache: LSTMState | None = None,
        *,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """Final states (B, T, n_embd) and the LSTM's state after these tokens (the decoder's KV cache).

        An LSTM has no positions, and reads every token before the next: it cannot skip left padding,
        so the masked form of the decoder's call (left-padded prompts of several lengths) is refused.
        """
        if attn_mask is not None:
            raise ValueError("the LSTM cannot mask left padding: give it prompts of one length")
        x = self.drop(self.tokens_embed(input_ids))
        out, state = self.lstm(x, cache)
        if self.proj is not None:
            out = self.proj(out)
        return self.out_drop(out), state

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The tied head's scores of states `h` over the vocabulary (padding rows left out)."""
        return self.lm_head(h)[..., : self.config.vocab_size]

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        cache: LSTMState | None = None,
        use_cache: bool = False,
        return_hidden: bool = False,
        return_logits: bool = True,
    ) -> GPTOutput:
        """As `GPT.forward`: Hugging Face's label convention (`labels[t]` is the target of position t-1)."""
        h, state = self.hidden(input_ids, cache)
        logits, loss = scored_logits(self, h, labels, return_logits)
        return GPTOutput(logits=logits, loss=loss, hidden_states=h if return_hidden else None,
                         cache=state if use_cache else None)


__all__ = ["LSTMLM", "LSTMState"]
