"""The demo's genre task: factual labels, dev plays held out, balanced training, no title leaks."""

from genpt.datasets.folio_genres import DEV_PLAYS, GENRES, balanced, genre_examples, passages, split_plays
from genpt.datasets.shakespeare import FIRST_FOLIO_GENRES, Play


def fake_plays(tmp_path):
    plays = []
    for key, genre in FIRST_FOLIO_GENRES.items():
        path = tmp_path / f"{key}_gut.txt"
        body = "\n".join(f"{key.upper()} line {i} of the play, in verse or prose." for i in range(400))
        path.write_text(f"THE TITLE OF {key.upper()}\n\nPERSONS REPRESENTED.\n\n" + body)
        plays.append(Play(key, key, genre, path))
    plays.append(Play("sonnets", "Sonnets", None, tmp_path / "sonnets_gut.txt"))
    return plays


def test_dev_plays_are_held_out_and_two_of_each_genre(tmp_path):
    train, dev = split_plays(fake_plays(tmp_path))
    assert {p.key for p in dev} == set(DEV_PLAYS)
    assert not {p.key for p in train} & set(DEV_PLAYS)
    assert sorted(p.genre for p in dev) == sorted([g for g in GENRES for _ in range(2)])


def test_passages_skip_the_front_matter_and_end_at_line_breaks():
    text = "THE TRAGEDY OF X\nPERSONS REPRESENTED.\n" + "\n".join(f"line {i} ..." for i in range(1000))
    found = passages(text, 100)
    assert found and not any("TRAGEDY" in p or "PERSONS" in p for p in found)
    assert all(len(p) >= 100 - 20 for p in found)


def test_training_examples_are_balanced_across_genres_and_labelled_by_the_folio(tmp_path):
    train, _ = split_plays(fake_plays(tmp_path))
    examples = balanced(genre_examples(train, 10))
    counts = [sum(e.label == g for e in examples) for g in range(3)]
    assert counts[0] == counts[1] == counts[2] > 0
    for e in examples:
        key = e.source.rsplit("/", 1)[1].split("_gut.txt")[0]
        assert GENRES[e.label] == FIRST_FOLIO_GENRES[key]
        assert key.upper() in e.texts[0]  # the passage comes from the play its label names
