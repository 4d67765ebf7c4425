"""A fine-tuned model's predictions on encoded examples, and the task's metrics of them: what fine-tuning's
dev evaluation (genpt.train.finetune) and `genpt evaluate` / `predict` (genpt.predict) share."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genpt import metrics
from genpt.data.tasks import Example, TaskSpec
from genpt.data.transforms import EncodedExample, collate
from genpt.model import GPTForTask
from genpt.objectives import predictions, probabilities


@torch.no_grad()
def predict_encoded(model: GPTForTask, encoded: Sequence[EncodedExample], target: str, pad_id: int,
                    batch_size: int = 64) -> tuple[list, list[list[float]] | None]:
    """Predicted class ids, answer indices or scores, and class probabilities (None for scores)."""
    model.eval()
    device = next(model.parameters()).device
    predicted, probs = [], []
    for i in range(0, len(encoded), batch_size):
        batch = collate(encoded[i : i + batch_size], pad_id, target)
        logits = model(batch["input_ids"].to(device), batch["extract_index"].to(device)).logits
        predicted.extend(predictions(target, logits).tolist())
        p = probabilities(target, logits)
        if p is not None:
            probs.extend(p.tolist())
    return predicted, (probs if target != "score" else None)


def score(task: TaskSpec, predicted: Sequence, examples: Sequence[Example]) -> dict[str, float]:
    """The task's GLUE-style metrics of `predicted` against the examples' labels."""
    return metrics.compute(task.metrics, list(predicted), [e.label for e in examples])


__all__ = ["predict_encoded", "score"]
