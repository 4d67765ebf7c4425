"""The zero-shot figure, a panel a task: tasks with a fine-tuned scale are drawn normalised as in the paper; one without
(fine-tuning never beat chance by MIN_GAIN) gets a panel of its own in its metric instead of being left out."""

import matplotlib.image

from genpt.study.figures import zeroshot_curves
from genpt.study.zeroshot import REWORDED, base_task


def rows(task: str, metric: str, chance: float, values: list[float], best: float | None,
         examples: int | None = None) -> list[dict]:
    counted = {} if examples is None else {"examples": examples}
    return [{"tokens": 1000 * (i + 1), "task": task, "metric": metric, "chance": chance, "value": v, "best": best,
             "normalised": None if best is None else (v - chance) / (best - chance), **counted}
            for i, v in enumerate(values)]


def width(path) -> int:
    return matplotlib.image.imread(path).shape[1]


def test_a_task_without_a_fine_tuned_scale_is_drawn_in_its_own_metric_beside_the_normalised(tmp_path):
    story = rows("story_cloze", "accuracy", 0.5, [0.52, 0.53, 0.55], best=0.68)
    cola = rows("cola", "mcc", 0.0, [0.03, 0.06, 0.09], best=None)
    both = zeroshot_curves({"gpt": story + cola}, tmp_path / "both.png", min_gain=0.1)
    alone = zeroshot_curves({"gpt": story}, tmp_path / "alone.png", min_gain=0.1)
    assert (tmp_path / "both.png").stat().st_size > 0 and (tmp_path / "alone.png").stat().st_size > 0
    assert "normalised between chance (0) and the best fine-tuned score (1)" in both.caption
    assert "in its own metric with its chance level dotted: cola" in both.caption
    assert "cola" not in alone.caption
    assert width(tmp_path / "both.png") > 1.5 * width(tmp_path / "alone.png")  # a second panel, not a left-out task


def test_without_any_fine_tuned_score_every_task_is_drawn_in_its_metric(tmp_path):
    figure = zeroshot_curves({"gpt": rows("cola", "mcc", 0.0, [0.01, 0.02], best=None)}, tmp_path / "z.png", 0.1)
    assert "as fractions" in figure.caption
    assert (tmp_path / "z.png").stat().st_size > 0


def coloured_pixels(path) -> int:
    image = matplotlib.image.imread(path)[..., :3]
    return int((image.min(axis=-1) < 0.97).sum())


def test_each_score_is_shaded_by_its_standard_error_when_the_rows_count_their_examples(tmp_path):
    counted = rows("story_cloze", "accuracy", 0.5, [0.52, 0.53, 0.55], best=0.68, examples=374)
    counted += rows("cola", "mcc", 0.0, [0.03, 0.06, 0.09], best=None, examples=1043)
    uncounted = rows("story_cloze", "accuracy", 0.5, [0.52, 0.53, 0.55], best=0.68)
    uncounted += rows("cola", "mcc", 0.0, [0.03, 0.06, 0.09], best=None)
    shaded = zeroshot_curves({"gpt": counted}, tmp_path / "shaded.png", min_gain=0.1)
    bare = zeroshot_curves({"gpt": uncounted}, tmp_path / "bare.png", min_gain=0.1)
    assert "Shaded: one standard error" in shaded.caption and "Shaded" not in bare.caption
    # 374 stories: +-0.026 accuracy, +-0.17 on the normalised scale: bands that cover far more than the lines
    assert coloured_pixels(tmp_path / "shaded.png") > 1.2 * coloured_pixels(tmp_path / "bare.png")


def test_a_unigram_reference_is_one_level_per_task_not_a_point_of_the_curve(tmp_path):
    story = rows("story_cloze", "accuracy", 0.5, [0.52, 0.53, 0.55], best=0.68)
    reference = {**story[0], "tokens": 0, "value": 0.54, "normalised": (0.54 - 0.5) / 0.18, "reference": "unigram"}
    with_reference = zeroshot_curves({"gpt": [*story, reference], "lstm": [*story, reference]},
                                     tmp_path / "ref.png", min_gain=0.1)
    without = zeroshot_curves({"gpt": story, "lstm": story}, tmp_path / "bare.png", min_gain=0.1)
    assert "dash-dotted, each task's heuristic scored by a unigram model" in with_reference.caption
    assert "unigram" not in without.caption
    assert coloured_pixels(tmp_path / "ref.png") > coloured_pixels(tmp_path / "bare.png")


def test_a_frequency_corrected_heuristic_is_named_in_the_caption_as_drawing_no_reference(tmp_path):
    story = rows("story_cloze", "accuracy", 0.5, [0.52, 0.53], best=0.68)
    pmi = rows("story_cloze_pmi", "accuracy", 0.5, [0.53, 0.51], best=0.68)
    figure = zeroshot_curves({"gpt": story + pmi}, tmp_path / "z.png", 0.1, corrected=["cola_slor", "story_cloze_pmi"])
    assert "; story_cloze_pmi: the heuristic corrected for word frequency" in figure.caption
    assert "cola_slor" not in figure.caption  # only the corrected heuristics drawn
    plain = zeroshot_curves({"gpt": story}, tmp_path / "p.png", 0.1, corrected=["cola_slor", "story_cloze_pmi"])
    assert "corrected" not in plain.caption


def test_a_heuristic_in_other_words_than_the_paper_s_is_named_in_the_caption_with_what_it_asks(tmp_path):
    sst2 = rows("sst2", "accuracy", 0.5, [0.50, 0.51], best=0.75)
    verdict = rows("sst2_verdict", "accuracy", 0.5, [0.51, 0.56], best=0.75)
    figure = zeroshot_curves({"gpt": sst2 + verdict}, tmp_path / "v.png", 0.1, reworded=REWORDED)
    assert f"; sst2_verdict: {REWORDED['sst2_verdict']} (not the paper's" in figure.caption
    plain = zeroshot_curves({"gpt": sst2}, tmp_path / "p.png", 0.1, reworded=REWORDED)
    assert "not the paper's" not in plain.caption


def test_a_task_s_heuristics_share_its_panel(tmp_path):
    drawn = [*rows("cola", "mcc", 0.0, [0.04, 0.05], best=0.3), *rows("cola_slor", "mcc", 0.0, [0.05, 0.12], best=0.3),
             *rows("sst2", "accuracy", 0.5, [0.50, 0.51], best=0.75),
             *rows("sst2_verdict", "accuracy", 0.5, [0.51, 0.56], best=0.75)]
    grouped = zeroshot_curves({"gpt": drawn}, tmp_path / "grouped.png", 0.1, task_of=base_task)
    apart = zeroshot_curves({"gpt": drawn}, tmp_path / "apart.png", 0.1)
    assert "a panel a task" in grouped.caption and grouped.caption == apart.caption
    assert width(tmp_path / "grouped.png") < 0.8 * width(tmp_path / "apart.png")  # two panels a row, not three
