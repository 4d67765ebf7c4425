"""Using a fine-tuned model: predictions with probabilities or scores, and the task's dev metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genpt import io
from genpt.data.tasks import Example, TaskSpec
from genpt.data.transforms import encode_examples
from genpt.evaluation import predict_encoded
from genpt.load import Loaded


@dataclass
class Predictions:
    predicted: list  # class ids, answer indices or scores
    probabilities: list[list[float]] | None
    truncated: int


def predict(finetuned: Loaded, examples: Sequence[Example], batch_size: int = 64) -> Predictions:
    encoded, truncated = encode_examples(finetuned.task, examples, finetuned.tokenizer, finetuned.max_len)
    predicted, probs = predict_encoded(finetuned.model, encoded, finetuned.task.target,
                                       finetuned.tokenizer.pad_id, batch_size)
    return Predictions(predicted, probs, truncated)


def label_name(task: TaskSpec, value) -> str | float | int:
    if task.target == "class" and task.label_names:
        return task.label_names[value]
    return value


def write_predictions(path: str | Path, task: TaskSpec, examples: Sequence[Example], result: Predictions) -> None:
    """JSON Lines by default; a .tsv or .csv output gets a header row and one row per example. Written atomically."""
    path = Path(path)
    rows = []
    for i, example in enumerate(examples):
        row = {"source": example.source, "prediction": label_name(task, result.predicted[i])}
        if result.probabilities is not None:
            names = task.label_names if task.target == "class" and task.label_names else range(
                len(result.probabilities[i]))
            row.update({f"p_{name}": p for name, p in zip(names, result.probabilities[i], strict=True)})
        rows.append(row)
    if path.suffix not in (".tsv", ".csv"):
        io.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
        return
    import csv

    with io.atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["source", "prediction"],
                                delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)
