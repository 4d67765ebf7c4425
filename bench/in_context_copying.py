"""Does a language model read a sentence more easily the second time? In-context copying, per checkpoint.

Not a speed benchmark: a probe of what pre-training has taught. Each sentence is scored once as it is
and once followed by itself; a model that can copy from its context (the "induction heads" of Olsson et
al., 2022) predicts the repeat almost for free, one that cannot reads it as new text. Sentence-pair
tasks (STS-B, MRPC) ask a fine-tuned model to match the words of one sentence against the other's, the
same ability, so this probe says whether a checkpoint has what those tasks build on.

    python bench/in_context_copying.py STUDY/pretrain/checkpoints/step_* STUDY/pretrain-lstm
    python bench/in_context_copying.py RUN --data ../shared/data/glue/STS-B/dev.tsv --sentences 200
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

from genpt.data.readers import read_examples
from genpt.data.tasks import builtin_task
from genpt.load import load_model
from genpt.model import GPT
from genpt.scoring import token_logprobs
from genpt.tokenizer import Tokenizer


@dataclass
class Copying:
    first: float  # mean loss per token of the sentences read once (nats)
    repeat: float  # mean loss per token of the same sentences read again right after

    @property
    def drop(self) -> float:
        """The share of the first reading's loss that the repeat saves: 0 for no copying, 1 for perfect."""
        return 1 - self.repeat / self.first


def copying(model: GPT, tokenizer: Tokenizer, sentences: Sequence[str]) -> Copying:
    """Each sentence (cut to half the context) scored on its own, then as the second half of itself twice."""
    half = model.config.n_ctx // 2
    first, repeat = [], []
    for sentence in sentences:
        ids = tokenizer.encode(" " + sentence.strip())[:half]
        if len(ids) < 2:
            continue
        logprobs = token_logprobs(model, ids + ids)  # logprobs[t - 1] scores token t
        first.append(-sum(logprobs[: len(ids) - 1]) / (len(ids) - 1))
        repeat.append(-sum(logprobs[len(ids) - 1 :]) / len(ids))
    return Copying(sum(first) / len(first), sum(repeat) / len(repeat))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="runs or checkpoint folders (genpt.load_model takes any)")
    p.add_argument("--data", default="../shared/data/glue/STS-B/dev.tsv",
                   help="an STS-B file: its first sentences are read (default: the dev set)")
    p.add_argument("--sentences", type=int, default=200)
    args = p.parse_args(argv)
    sentences = [e.texts[0] for e in read_examples(builtin_task("stsb"), args.data)[: args.sentences]]
    print(f"{len(sentences)} sentences of {args.data}; loss per token in nats (uniform over the vocabulary: ln V)")
    print(f"{'model':<60} {'read once':>9} {'repeated':>9} {'saved':>6} {'ln V':>6}")
    for path in args.models:
        loaded = load_model(path)
        model = loaded.lm
        result = copying(model, loaded.tokenizer, sentences)
        ln_v = math.log(model.config.vocab_size)
        print(f"{path:<60} {result.first:9.2f} {result.repeat:9.2f} {result.drop:6.0%} {ln_v:6.2f}")


if __name__ == "__main__":
    main()
