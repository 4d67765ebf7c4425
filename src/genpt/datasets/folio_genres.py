"""A labeled task whose labels are facts: the First Folio genre (comedy, history, tragedy) of a passage.

Passages are cut from the plays of the demo corpus at line breaks. Each play's front matter (title,
list of persons) is skipped, since it names the play. Dev passages come from plays held out of
everything else: the demo neither pre-trains nor fine-tunes on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from genpt.data.tasks import Example, TaskSpec, custom_task
from genpt.datasets.shakespeare import Play

GENRES = ("comedy", "history", "tragedy")
# Two plays of each genre, never seen in pre-training or fine-tuning.
DEV_PLAYS = ("much_ado_about_nothing", "twelfth_night", "henry_v", "richard_iii", "macbeth", "othello")
FRONT_MATTER = 0.05  # share of each play skipped at its start


def genre_task() -> TaskSpec:
    return custom_task(name="folio_genre", type="classification", format="jsonl", columns=["text"],
                       label_column="genre", labels=list(GENRES))


def passages(text: str, chars: int) -> list[str]:
    """Consecutive passages of about `chars` characters, each ending at a line break."""
    lines = text[int(len(text) * FRONT_MATTER):].splitlines()
    out, current = [], []
    size = 0
    for line in lines[1:]:  # the first line may start mid-way
        if not line.strip():
            continue
        current.append(line.strip())
        size += len(line) + 1
        if size >= chars:
            out.append("\n".join(current))
            current, size = [], 0
    return out


def genre_examples(plays: Sequence[Play], per_play: int, chars: int = 400) -> list[Example]:
    """`per_play` passages from each play with a genre, spread evenly through the play."""
    examples = []
    for play in plays:
        if play.genre is None:
            continue
        found = passages(play.path.read_text(encoding="utf-8"), chars)
        step = max(1, len(found) // per_play)
        for i, text in enumerate(found[::step][:per_play]):
            examples.append(Example((text,), GENRES.index(play.genre), f"{play.path}:passage {i * step}"))
    return examples


def balanced(examples: Sequence[Example]) -> list[Example]:
    """The same number of examples of each genre, spread over its plays, so that predicting the most
    frequent genre of the training set gains nothing on the balanced dev set."""
    by_genre = [[e for e in examples if e.label == g] for g in range(len(GENRES))]
    n = min(len(group) for group in by_genre)
    return [group[i * len(group) // n] for group in by_genre for i in range(n)]


def split_plays(plays: Sequence[Play]) -> tuple[list[Play], list[Play]]:
    """(plays for pre-training and fine-tuning, held-out plays for dev)."""
    return [p for p in plays if p.key not in DEV_PLAYS], [p for p in plays if p.key in DEV_PLAYS]
