"""Zero-shot heuristics against decisions computed here by hand: direct model calls and log_softmax."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import matthews_corrcoef

from genpt import checkpoint as ckpt
from genpt.cli import main
from genpt.config import ModelConfig
from genpt.data.tasks import Example
from genpt.errors import GenptError
from genpt.model import GPT
from genpt.study import continuations
from genpt.study import zeroshot as zs
from genpt.tokenizer import Tokenizer

TEXT = """The film was very positive and the play was very negative. Jane knocked on the door but she did not
answer. Susan was at home. The trophy does not fit in the case because it is too large. A good story ends
well; a bad one ends badly. Rick grew up in a troubled house. He joined a gang. He is happy now.
Positive or negative? It was positive, not negative; a positive view, a negative one.
"""


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A random tiny decoder (peaked: init std 0.3) and a real tokenizer, saved as a checkpoint folder."""
    root = tmp_path_factory.mktemp("zs")
    tokenizer = Tokenizer.train([TEXT * 3], vocab_size=400)
    tokenizer.save(root / "tokenizer.json")
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_ctx=64, n_embd=32, n_layer=2, n_head=2,
                         embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, initializer_range=0.3)
    model = GPT(config).eval()
    checkpoint = root / "run" / ckpt.CHECKPOINTS / "step_00000010"
    ckpt.write_checkpoint(checkpoint, model, None, {"step": 10, "tokens_seen": 640},
                          config={"model": dataclasses.asdict(config)}, tokenizer_json=root / "tokenizer.json")
    return model, tokenizer, root / "run"


def hand_logprobs(model, tokenizer, context: str, continuation: str) -> list[float]:
    """log p of the continuation's tokens after end-of-text + context: one forward pass, log_softmax."""
    prefix = [tokenizer.eot_id, *tokenizer.encode(context)]
    cont = tokenizer.encode(continuation)
    ids = torch.tensor([prefix + cont])
    with torch.no_grad():
        logp = model(ids).logits[0].log_softmax(dim=-1)
    return [logp[len(prefix) - 1 + k, token].item() for k, token in enumerate(cont)]


SENTENCES = ["the film was good", "a bad play", "he is happy now", "it ends badly", "the story was well told",
             "she did not answer", "susan was at home", "a troubled house", "the case is too large", "rick grew up",
             "very good", "not good at all"]


def test_many_continuations_scored_together_match_each_scored_alone(lm, monkeypatch):
    """Batches of similar lengths, right-padded: each text's numbers as alone, whatever the batch it lands in."""
    model, tokenizer, _ = lm
    words = TEXT.split()
    pairs = [(" ".join(words[:k]), " " + " ".join(words[k : k + 1 + k % 7])) for k in range(0, 60, 3)]
    pairs += [("Jane knocked", ""), ("", "A"), ("", " ".join(words[:80]))]  # empty; one token; past n_ctx (64)
    alone = [continuations.continuation_logprobs(model, tokenizer, c, x) for c, x in pairs]
    assert alone[1] == pytest.approx(hand_logprobs(model, tokenizer, *pairs[1]), abs=1e-5)
    for budget in (64, 300, continuations.TOKENS_PER_BATCH):  # one text a batch, a few, all that fit
        monkeypatch.setattr(continuations, "TOKENS_PER_BATCH", budget)
        together = continuations.continuation_logprobs_many(model, tokenizer, pairs)
        assert [len(v) for v in together] == [len(v) for v in alone]
        for got, want in zip(together, alone, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_sst2_compares_positive_with_negative_after_very(lm):
    model, tokenizer, _ = lm
    examples = [Example((s,), i % 2, f"x:{i}") for i, s in enumerate(SENTENCES)]
    expected = []
    for s in SENTENCES:
        pos = sum(hand_logprobs(model, tokenizer, s + " very", " positive"))
        neg = sum(hand_logprobs(model, tokenizer, s + " very", " negative"))
        expected.append(int(pos > neg))
    assert set(expected) == {0, 1}, "the tiny model should not decide every sentence alike"
    result = zs.zeroshot(model, tokenizer, "sst2", examples)
    assert result.predictions == expected
    assert result.value == pytest.approx(np.mean([p == e.label for p, e in zip(expected, examples, strict=True)]))


@pytest.mark.parametrize("task, after, positive, negative", [
    ("sst2", " very", " positive", " negative"),  # the paper's words
    ("sst2_verdict", "", " It was great.", " It was terrible."),  # a whole verdict after the sentence, no " very"
])
def test_sst2_given_training_sentences_thresholds_the_margin_chosen_on_them(lm, task, after, positive, negative):
    """Each continuation's tokens summed, their margin compared with the threshold that maximises MCC on the
    training sentences (found here by brute force over the midpoints)."""
    model, tokenizer, _ = lm
    train = [Example((s,), int(i % 3 != 0), f"t:{i}") for i, s in enumerate(SENTENCES)]
    dev = [Example((s,), i % 2, f"d:{i}") for i, s in enumerate(reversed(SENTENCES))]

    def margin(sentence: str) -> float:
        return (sum(hand_logprobs(model, tokenizer, sentence + after, positive))
                - sum(hand_logprobs(model, tokenizer, sentence + after, negative)))

    train_margins = [margin(e.texts[0]) for e in train]
    labels = [e.label for e in train]
    values = sorted(set(train_margins))
    candidates = [values[0] - 1, *((a + b) / 2 for a, b in itertools.pairwise(values))]
    threshold = max(candidates, key=lambda t: matthews_corrcoef(labels, [int(m > t) for m in train_margins]))
    expected = [int(margin(e.texts[0]) > threshold) for e in dev]
    result = zs.zeroshot(model, tokenizer, task, dev, train)
    assert result.predictions == expected and result.metric == "accuracy"
    assert f'log p("{positive}")' in result.detail and f"> {threshold:.4f} nats" in result.detail
    assert "12 training sentences" in result.detail
    assert zs.base_task(task) == "sst2" and zs.normalised(task, 0.6, 0.7) == pytest.approx(0.5)


def test_sst2_verdict_reads_other_words_than_the_paper_s(lm):
    model, tokenizer, _ = lm
    examples = [Example((s,), i % 2, f"x:{i}") for i, s in enumerate(SENTENCES)]
    paper, verdict = (zs.zeroshot(model, tokenizer, task, examples) for task in ("sst2", "sst2_verdict"))
    assert paper.predictions != verdict.predictions
    assert verdict.detail == 'sentence: " It was great." vs " It was terrible."'


def test_best_threshold_is_the_one_brute_force_finds():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # ties on purpose
    labels = (scores + rng.normal(scale=1.0, size=60) > 0).astype(int)
    threshold = zs.best_threshold(scores, labels)
    values = np.unique(scores)
    candidates = [values[0] - 1, *((values[:-1] + values[1:]) / 2)]
    brute = max(matthews_corrcoef(labels, (scores > t).astype(int)) for t in candidates)
    assert matthews_corrcoef(labels, (scores > threshold).astype(int)) == pytest.approx(brute)
    assert brute > 0.3


def test_cola_thresholds_mean_logprob_chosen_on_training_sentences(lm):
    model, tokenizer, _ = lm
    train = [Example((s,), int(i % 3 != 0), f"t:{i}") for i, s in enumerate(SENTENCES)]
    dev = [Example((s,), i % 2, f"d:{i}") for i, s in enumerate(reversed(SENTENCES))]
    train_scores = [np.mean(hand_logprobs(model, tokenizer, "", e.texts[0])) for e in train]
    labels = [e.label for e in train]
    values = sorted(set(train_scores))
    candidates = [values[0] - 1, *((a + b) / 2 for a, b in itertools.pairwise(values))]
    threshold = max(candidates, key=lambda t: matthews_corrcoef(labels, [int(s > t) for s in train_scores]))
    expected = [int(np.mean(hand_logprobs(model, tokenizer, "", e.texts[0])) > threshold) for e in dev]
    result = zs.zeroshot(model, tokenizer, "cola", dev, train)
    assert result.predictions == expected and result.metric == "mcc"
    assert f"> {threshold:.4f} nats" in result.detail and "12 training sentences" in result.detail
    with pytest.raises(GenptError, match="threshold is chosen on the training split"):
        zs.zeroshot(model, tokenizer, "cola", dev)


STORIES = [("Rick grew up in a troubled house.", "He joined a gang.", "He is happy now."),
           ("Jane knocked on the door.", "Susan was at home.", "She did not answer."),
           ("The film was good.", "A good story ends well.", "A bad one ends badly."),
           ("The trophy does not fit.", "It is too large.", "The case is very positive.")]


def test_story_cloze_picks_the_ending_with_the_higher_mean_logprob(lm):
    model, tokenizer, _ = lm
    stories, examples = STORIES, [Example(s, i % 2, f"s:{i}") for i, s in enumerate(STORIES)]
    expected = [int(np.argmax([np.mean(hand_logprobs(model, tokenizer, c, " " + e)) for e in endings]))
                for c, *endings in stories]
    assert zs.zeroshot(model, tokenizer, "story_cloze", examples).predictions == expected


def test_story_cloze_pmi_picks_the_ending_the_story_raises_most_over_it_read_alone(lm):
    model, tokenizer, _ = lm
    stories, examples = STORIES, [Example(s, i % 2, f"s:{i}") for i, s in enumerate(STORIES)]

    def pmi(story: str, ending: str) -> float:
        return np.mean(hand_logprobs(model, tokenizer, story, " " + ending)) - np.mean(
            hand_logprobs(model, tokenizer, "", " " + ending))

    expected = [int(np.argmax([pmi(c, e) for e in endings])) for c, *endings in stories]
    result = zs.zeroshot(model, tokenizer, "story_cloze_pmi", examples)
    assert result.predictions == expected and result.metric == "accuracy" and "mutual information" in result.detail


def test_cola_slor_thresholds_the_log_probability_less_a_unigram_model_s(lm):
    """SLOR: the mean over tokens of log p_model - log p_unigram, thresholded as CoLA's mean log-probability."""
    from genpt.study.unigram import UnigramLM

    model, tokenizer, _ = lm
    counts = np.arange(tokenizer.vocab_size, dtype=np.float64) % 7
    unigram = UnigramLM(counts, n_ctx=model.config.n_ctx)
    frequencies = np.log((counts + 1) / (counts + 1).sum())
    train = [Example((s,), int(i % 3 != 0), f"t:{i}") for i, s in enumerate(SENTENCES)]
    dev = [Example((s,), i % 2, f"d:{i}") for i, s in enumerate(reversed(SENTENCES))]

    def slor(text: str) -> float:
        return np.mean(np.array(hand_logprobs(model, tokenizer, "", text)) - frequencies[tokenizer.encode(text)])

    threshold = zs.best_threshold(np.array([slor(e.texts[0]) for e in train]), np.array([e.label for e in train]))
    result = zs.zeroshot(model, tokenizer, "cola_slor", dev, train, unigram)
    assert result.predictions == [int(slor(e.texts[0]) > threshold) for e in dev]
    assert f"(SLOR) > {threshold:.4f} nats" in result.detail
    plain = zs.zeroshot(model, tokenizer, "cola", dev, train, unigram)  # the paper's heuristic ignores the unigram
    assert plain.detail == zs.zeroshot(model, tokenizer, "cola", dev, train).detail
    with pytest.raises(GenptError, match="cola_slor: compares with a unigram model"):
        zs.zeroshot(model, tokenizer, "cola_slor", dev, train)


def test_texts_two_heuristics_read_are_scored_once_by_each_model(lm):
    """One `Scored` shared by CoLA and cola_slor, the Story Cloze Test and its PMI variant: the second heuristic
    runs the model only on texts the first did not read (the endings alone), and decides as it does alone."""
    from genpt.study.unigram import UnigramLM

    model, tokenizer, _ = lm
    unigram = UnigramLM(np.arange(tokenizer.vocab_size, dtype=np.float64) % 5, n_ctx=model.config.n_ctx)
    texts: list[list[int]] = []
    hook = model.register_forward_hook(lambda _m, args, _o: texts.extend(args[0].tolist()))
    train = [Example((s,), int(i % 3 != 0), f"t:{i}") for i, s in enumerate(SENTENCES)]
    dev = [Example((s,), i % 2, f"d:{i}") for i, s in enumerate(SENTENCES[:5])]
    stories = [Example(s, i % 2, f"s:{i}") for i, s in enumerate(STORIES)]
    try:
        alone = [zs.zeroshot(model, tokenizer, task, examples, train, unigram) for task, examples in
                 (("cola", dev), ("cola_slor", dev), ("story_cloze", stories), ("story_cloze_pmi", stories))]
        reads_alone = len(texts)
        texts.clear()
        scored = continuations.Scored()
        shared = [zs.zeroshot(model, tokenizer, "cola", dev, train, unigram, scored)]
        cola_reads = len(texts)
        shared.append(zs.zeroshot(model, tokenizer, "cola_slor", dev, train, unigram, scored))
        assert len(texts) == cola_reads  # every sentence already read
        shared.append(zs.zeroshot(model, tokenizer, "story_cloze", stories, None, unigram, scored))
        story_reads = len(texts)
        shared.append(zs.zeroshot(model, tokenizer, "story_cloze_pmi", stories, None, unigram, scored))
    finally:
        hook.remove()
    assert len(texts) - story_reads == 2 * len(STORIES)  # only each ending read alone
    assert cola_reads == len(SENTENCES)  # the dev sentences, also training sentences here, read once
    assert reads_alone == 2 * (len(train) + len(dev)) + 6 * len(STORIES)
    assert len(texts) == len(SENTENCES) + 4 * len(STORIES)
    assert [r.predictions for r in shared] == [r.predictions for r in alone]
    assert [r.detail for r in shared] == [r.detail for r in alone]


def test_wnli_alignment_finds_the_pronoun_the_hypothesis_replaces():
    a = zs.wnli_alignment("Jane knocked on Susan's door but she did not answer.", "Susan did not answer.")
    assert (a.before(a.candidate), a.rest, a.pronoun, a.candidate) == (
        "Jane knocked on Susan's door but Susan", " did not answer.", "she", "Susan")
    assert a.alternatives() == ["Jane"]
    a = zs.wnli_alignment("There is a pillar between me and the stage, and I can't see around it.",
                          "I can't see around the pillar.")
    assert (a.before(a.candidate), a.rest, a.candidate) == (
        "There is a pillar between me and the stage, and I can't see around the pillar", ".", "the pillar")
    assert a.alternatives() == ["the stage"]  # "a pillar" is the candidate itself
    a = zs.wnli_alignment("The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.")
    assert (a.before(a.candidate), a.rest) == ("The drain is clogged with hair. The hair", " has to be cleaned.")
    assert a.alternatives() == ["the drain"]
    a = zs.wnli_alignment("The delivery truck zoomed by the school bus because it was going so slow.",
                          "The school bus was going so slow.")
    assert a.before(a.candidate).endswith("because the school bus") and a.rest == " was going so slow."
    assert a.alternatives() == ["the delivery truck"]
    assert zs.wnli_alignment("It rained all day.", "Nothing here matches.") is None


def test_wnli_prefers_the_candidate_that_makes_the_rest_likelier(lm):
    model, tokenizer, _ = lm
    premise = "The trophy does not fit in the case because it is too large."
    lone = "Jane knocked on the door but she did not answer."
    examples = [Example((premise, "The trophy is too large."), 1, "w:1"),
                Example((premise, "The case is too large."), 0, "w:2"),
                Example((lone, "Jane did not answer."), 0, "w:3"),
                Example(("It rained all day.", "Nothing here matches."), 1, "w:4")]
    rest = lambda before, r: sum(hand_logprobs(model, tokenizer, before, r))  # noqa: E731
    trophy = rest("The trophy does not fit in the case because the trophy", " is too large.")
    case = rest("The trophy does not fit in the case because the case", " is too large.")
    jane = rest("Jane knocked on the door but Jane", " did not answer.")
    door = rest("Jane knocked on the door but the door", " did not answer.")  # the premise's other referent
    expected = [int(trophy >= case), int(case >= trophy), int(jane >= door), 0]
    result = zs.zeroshot(model, tokenizer, "wnli", examples)
    assert result.predictions == expected
    assert result.detail.startswith("2 examples compared with another example's candidate")
    assert "1 with referents found in the premise, 0 with the pronoun itself, 1 unaligned" in result.detail


def test_curve_over_checkpoints_is_normalised_between_chance_and_the_best_score(lm, tmp_path):
    model, tokenizer, run = lm
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)))
    rows = zs.zeroshot_curve(run, [zs.ZeroShotData("sst2", data, best=0.9)])
    direct = zs.zeroshot(model, tokenizer, "sst2", zs.read_task("sst2", data))
    assert [(r["step"], r["tokens"], r["task"]) for r in rows] == [(10, 640, "sst2")]
    assert rows[0]["value"] == direct.value
    assert rows[0]["normalised"] == pytest.approx((direct.value - 0.5) / (0.9 - 0.5))
    zs.write_curve(run, [{**rows[0], "task": "cola"}])
    zs.write_curve(run, rows)
    zs.write_curve(run, rows)  # rewriting a task replaces its rows and keeps the others'
    assert sorted(r["task"] for r in zs.read_curve(run)) == ["cola", "sst2"]


def test_zeroshot_command_prints_the_score_and_refuses_cola_without_train(lm, tmp_path, capsys):
    _, _, run = lm
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)))
    assert main(["zeroshot", str(run), "--task", "sst2", "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "sst2" and out["examples"] == 12 and 0 <= out["metrics"]["accuracy"] <= 1
    cola = tmp_path / "cola.tsv"
    cola.write_text("".join(f"src\t{i % 2}\t\t{s}\n" for i, s in enumerate(SENTENCES)))
    assert main(["zeroshot", str(run), "--task", "cola", "--data", str(cola)]) == 2
    assert "give --train FILE" in capsys.readouterr().err
    assert main(["zeroshot", str(run), "--task", "cola", "--data", str(cola), "--train", str(cola)]) == 0
    assert "training sentences" in capsys.readouterr().out


def test_a_best_score_at_chance_does_not_normalise_the_curve():
    assert zs.normalised("cola", 0.05, -0.003) is None  # fine-tuning never beat chance: no scale to draw on
    assert zs.normalised("sst2", 0.6, 0.51) is None
    assert zs.normalised("sst2", 0.6, 0.7) == pytest.approx(0.5)
    assert zs.normalised("cola", 0.03, 0.055) is None  # a unit as small as the zero-shot wobble draws noise


def test_the_unigram_reference_scores_the_run_s_token_frequencies(tmp_path, capsys):
    """Each position's log-probability is log((count + 1) / (tokens + ids)) of the run's training shards; the curve
    carries its score as a reference row; without the shards there is none, and --unigram says why in one line."""
    from conftest import SHARED_DATA, pretrain_tiny, shared_data

    from genpt.data.shards import TokenShards
    from genpt.study.unigram import unigram_of_run

    shared_data("story_cloze")
    run = pretrain_tiny(tmp_path, tmp_path / "run", steps=2)
    model, tokenizer = unigram_of_run(run)
    shards = TokenShards(tmp_path / "shards")
    ids = shards.read(0, len(shards)).astype(np.int64)
    counts = np.bincount(ids, minlength=tokenizer.vocab_size) + 1.0
    text = " the king is dead"
    expected = np.log(counts / counts.sum())[tokenizer.encode(text)]
    got = continuations.continuation_logprobs(model, tokenizer, "long live", text)
    np.testing.assert_allclose(got, expected, rtol=1e-5)

    stories = SHARED_DATA / "story_cloze" / "cloze_test_val__spring2016 - cloze_test_ALL_val.csv"
    rows = zs.zeroshot_curve(run, [zs.ZeroShotData("story_cloze", stories, limit=40)])
    [reference] = [r for r in rows if r.get("reference") == zs.UNIGRAM]
    alone = zs.zeroshot(model, tokenizer, "story_cloze", zs.read_task("story_cloze", stories, 40))
    assert reference["value"] == alone.value and reference["examples"] == 40
    assert len(rows) == len(ckpt.checkpoint_dirs(run)) + 1  # a row a checkpoint, and the reference

    # The corrected heuristic reads the same unigram model (the run's, or the checkpoint's run's) and has no
    # reference row: the unigram model scores it at chance by construction.
    rows = zs.zeroshot_curve(run, [zs.ZeroShotData("story_cloze_pmi", stories, limit=40)])
    assert [r["task"] for r in rows] == ["story_cloze_pmi"] * len(ckpt.checkpoint_dirs(run))
    cola = tmp_path / "cola.tsv"
    cola.write_text("".join(f"src\t{i % 2}\t\t{s}\n" for i, s in enumerate(SENTENCES)))
    checkpoint = ckpt.checkpoint_dirs(run)[-1]
    code = main(["zeroshot", str(checkpoint), "--task", "cola_slor", "--data", str(cola), "--train", str(cola)])
    assert code == 0 and "less the unigram model's (SLOR)" in capsys.readouterr().out

    for file in (tmp_path / "shards").iterdir():
        file.unlink()
    assert not [r for r in zs.zeroshot_curve(run, [zs.ZeroShotData("story_cloze", stories, limit=8)])
                if r.get("reference")]
    code = main(["zeroshot", str(run), "--task", "story_cloze", "--data", str(stories), "--limit", "8", "--unigram"])
    err = capsys.readouterr().err
    assert code == 2 and "are not there; the unigram reference counts their tokens" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(GenptError, match="are not there"):  # cola_slor cannot be scored without them
        zs.zeroshot_curve(run, [zs.ZeroShotData("cola_slor", cola, train=cola)])
