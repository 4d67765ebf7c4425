"""Run-time kernel selection: the measured fastest runs, the plain twin when a fast path is slower or does not
apply, choices survive in the cache file, GENPT_KERNELS forces. Timings are injected: nothing here times."""

import json

import pytest
import torch
import torch.nn.functional as F

from genpt import kernels
from genpt.errors import GenptError
from genpt.kernels import select
from genpt.kernels.registry import Alternative, FastPath


def fixed_timer(seconds: dict[str, float], calls: list[dict]):
    def timer(applicable, args):
        calls.append(dict(applicable))
        return {name: seconds[name] for name in applicable}

    return timer


def double_path(fast_applies=lambda *a: True) -> FastPath:
    return FastPath("double",
                    Alternative("fast", fast_applies, lambda x: x * 2),
                    Alternative("plain", lambda *a: True, lambda x: x + x))


@pytest.fixture
def installed():
    """Install a selector for the test, restoring the process's afterwards."""
    saved = select.use(None)
    yield lambda sel: select.use(sel)
    select.use(saved)


def test_a_slower_fast_path_falls_back_to_the_plain_twin(installed, tmp_path):
    calls = []
    installed(select.Selector("measure", select.Cache(tmp_path / "c.json"), fixed_timer({"fast": 2.0, "plain": 1.0},
                                                                                        calls)))
    path = double_path()
    assert path.choose(torch.ones(3)).name == "plain"
    assert set(calls[0]) == {"fast", "plain"}


def test_a_faster_fast_path_is_kept_and_measured_once_per_signature(installed, tmp_path):
    calls = []
    installed(select.Selector("measure", select.Cache(tmp_path / "c.json"), fixed_timer({"fast": 1.0, "plain": 2.0},
                                                                                        calls)))
    path = double_path()
    for _ in range(3):
        assert path.choose(torch.ones(2, 4, 8)).name == "fast"
    assert path.choose(torch.ones(2, 3, 8)).name == "fast"  # a length of 3 rounds up to 4: the same signature
    assert len(calls) == 1
    path.choose(torch.ones(2, 4, 5))
    path.choose(torch.ones(3, 8))  # two dimensions (a weight): exact
    path.choose(torch.ones(4, 8))
    assert len(calls) == 4


def test_labels_of_every_length_near_a_power_of_two_share_one_measurement(installed, tmp_path):
    """Fine-tuning's auxiliary LM labels change length with every batch: one measurement per bucket,
    not one per length (each measurement costs up to seconds)."""
    calls = []
    installed(select.Selector("measure", select.Cache(tmp_path / "c.json"), fixed_timer({"fast": 1.0, "plain": 2.0},
                                                                                        calls)))
    path = FastPath("pick", Alternative("fast", lambda *a: True, lambda x, i: x[:, : i.shape[1]]),
                    Alternative("plain", lambda *a: True, lambda x, i: x[:, : i.shape[1]]))
    for length in range(65, 129):
        path.choose(torch.ones(32, 128, 8), torch.zeros(32, length, dtype=torch.long))
    assert len(calls) == 1


def test_a_fast_path_that_does_not_apply_is_neither_measured_nor_run(installed, tmp_path):
    calls = []
    installed(select.Selector("measure", select.Cache(tmp_path / "c.json"), fixed_timer({"fast": 0.1, "plain": 1.0},
                                                                                        calls)))
    path = double_path(fast_applies=lambda x: False)
    assert path.choose(torch.ones(3)).name == "plain"
    assert calls == []


def test_a_fast_path_within_the_margin_of_the_plain_one_loses():
    assert select.pick({"fast": 1.0, "plain": 1.0 * select.MARGIN * 0.999}, "plain") == "plain"
    assert select.pick({"fast": 1.0, "plain": 1.0 * select.MARGIN * 1.01}, "plain") == "fast"


def test_choices_are_read_back_from_the_cache_file_without_measuring(installed, tmp_path):
    calls = []
    file = tmp_path / "kernels" / "cpu.json"
    installed(select.Selector("measure", select.Cache(file), fixed_timer({"fast": 1.0, "plain": 2.0}, calls)))
    double_path().choose(torch.ones(8))
    assert file.exists() and len(calls) == 1
    installed(select.Selector("measure", select.Cache(file), fixed_timer({"fast": 1.0, "plain": 2.0}, calls)))
    assert double_path().choose(torch.ones(8)).name == "fast"
    assert len(calls) == 1


def test_a_damaged_cache_file_is_measured_again(installed, tmp_path):
    file = tmp_path / "c.json"
    file.write_text("{not json")
    calls = []
    installed(select.Selector("measure", select.Cache(file), fixed_timer({"fast": 3.0, "plain": 2.0}, calls)))
    assert double_path().choose(torch.ones(8)).name == "plain"
    assert len(calls) == 1


@pytest.mark.parametrize(("setting", "expected"), [("double=fast", "fast"), ("double=plain", "plain"),
                                                   ("plain", "plain"), ("first", "fast")])
def test_the_setting_forces_a_choice_without_measuring(installed, tmp_path, setting, expected):
    calls = []
    installed(select.Selector(setting, select.Cache(tmp_path / "c.json"), fixed_timer({"fast": 2.0, "plain": 1.0},
                                                                                      calls)))
    assert double_path().choose(torch.ones(3)).name == expected
    assert calls == []


def test_a_forced_alternative_that_does_not_apply_falls_back_to_the_plain_twin(installed, tmp_path):
    installed(select.Selector("double=fast", select.Cache(tmp_path / "c.json")))
    assert double_path(fast_applies=lambda x: False).choose(torch.ones(3)).name == "plain"


def test_an_unknown_setting_is_one_clear_error():
    with pytest.raises(GenptError, match="GENPT_KERNELS"):
        select.parse_setting("fastest")


def test_measuring_restores_the_random_state_and_times_the_backward():
    x = torch.randn(64, 32, requires_grad=True)
    state = torch.get_rng_state()
    seconds = select.measure({"lanes": lambda x: kernels.dropout(x, 0.1, True), "plain": lambda x: F.dropout(x, 0.1)},
                             [x], rounds=2)
    assert set(seconds) == {"lanes", "plain"} and all(s > 0 for s in seconds.values())
    assert torch.equal(torch.get_rng_state(), state)
    assert x.grad is None  # the measurement ran on copies


def test_the_model_trains_the_same_through_measured_kernels(installed, tmp_path):
    """Whatever wins, the measured selection runs a real alternative: one step's loss matches the plain twins'."""
    from genpt.config import ModelConfig
    from genpt.model import GPT

    config = ModelConfig(vocab_size=64, n_ctx=16, n_embd=32, n_layer=1, n_head=2, embd_pdrop=0.0, attn_pdrop=0.0,
                         resid_pdrop=0.0)
    ids = torch.randint(0, 64, (2, 16))
    losses = {}
    for setting in ("plain", "measure"):
        installed(select.Selector(setting, select.Cache(tmp_path / "c.json")))
        torch.manual_seed(0)
        losses[setting] = GPT(config).train()(ids, labels=ids, return_logits=False).loss
    torch.testing.assert_close(losses["measure"], losses["plain"])


def test_forgetting_the_cache_measures_again(installed, tmp_path):
    calls = []
    file = tmp_path / "c.json"
    sel = select.Selector("measure", select.Cache(file), fixed_timer({"fast": 1.0, "plain": 2.0}, calls))
    installed(sel)
    double_path().choose(torch.ones(8))
    sel.forget()
    assert not file.exists()
    double_path().choose(torch.ones(8))
    assert len(calls) == 2


def test_a_choice_measured_on_an_oversubscribed_machine_is_measured_again_once_it_is_quiet(installed, tmp_path,
                                                                                             monkeypatch):
    calls = []

    def later_process():
        timer = fixed_timer({"fast": 1.0, "plain": 2.0}, calls)
        installed(select.Selector("measure", select.Cache(tmp_path / "c.json"), timer))

    monkeypatch.setattr(select, "load_per_core", lambda: 9.0)
    later_process()
    double_path().choose(torch.ones(8))
    later_process()
    double_path().choose(torch.ones(8))
    assert len(calls) == 1  # still busy: the choice holds
    monkeypatch.setattr(select, "load_per_core", lambda: 0.5)
    later_process()
    double_path().choose(torch.ones(8))
    later_process()
    double_path().choose(torch.ones(8))
    assert len(calls) == 2  # quiet now: measured once more, then held


def test_a_final_selector_keeps_a_choice_measured_on_a_busy_machine(installed, tmp_path, monkeypatch):
    """A study's stages run the kernel recorded first, however the load has changed since (another kernel sums
    in another order, and a stage run later would not repeat the first's numbers)."""
    calls = []
    file = tmp_path / "study" / "kernels.json"
    monkeypatch.setattr(select, "load_per_core", lambda: 9.0)
    installed(select.Selector("measure", select.Cache(file), fixed_timer({"fast": 2.0, "plain": 1.0}, calls),
                              final=True))
    assert double_path().choose(torch.ones(8)).name == "plain"
    monkeypatch.setattr(select, "load_per_core", lambda: 0.5)  # quiet now: the fast path would win
    installed(select.Selector("measure", select.Cache(file), fixed_timer({"fast": 1.0, "plain": 2.0}, calls),
                              final=True))
    assert double_path().choose(torch.ones(8)).name == "plain" and len(calls) == 1


def test_a_cache_takes_from_its_seed_what_it_is_asked_for_and_processes_merge_what_they_record(tmp_path):
    machine, study = tmp_path / "machine.json", tmp_path / "study" / "kernels.json"
    select.Cache(machine).put("a|x", select.Choice("fast", {"fast": 1.0, "plain": 2.0}))
    select.Cache(machine).put("unused|w", select.Choice("fast"))
    first, second = select.Cache(study, seed=machine), select.Cache(study, seed=machine)
    assert first.get("a|x").chosen == "fast" and study.exists()  # recorded when first asked for
    select.Cache(machine).put("a|x", select.Choice("plain", {"fast": 2.0, "plain": 1.0}))
    assert second.get("a|x").chosen == "fast"  # once recorded, the seed no longer matters
    assert "unused|w" not in json.loads(study.read_text())["choices"]  # the file lists what was asked for only
    first.put("b|y", select.Choice("fast"))
    second.put("c|z", select.Choice("plain"))  # loaded before "b|y" was recorded: keeps it all the same
    assert sorted(select.Cache(study).get(k).chosen for k in ("a|x", "b|y", "c|z")) == ["fast", "fast", "plain"]
    # Two processes measuring one new signature at once: with replace=False the first recorded stands.
    assert second.put("b|y", select.Choice("plain"), replace=False).chosen == "fast"
    assert select.Cache(study).get("b|y").chosen == "fast"


def test_a_run_resumed_after_a_choice_was_measured_again_runs_the_kernel_it_began_with(installed, tmp_path,
                                                                                         monkeypatch):
    """RUN/kernels.json (`recorded_in`, entered by every training run): the machine's cache may re-measure a choice
    between a run and its resumption; the run keeps the one it recorded, and a block inside another keeps the
    outer file (a study's stage is a run)."""
    calls = []
    machine, run = tmp_path / "machine.json", tmp_path / "run"
    monkeypatch.setattr(select, "load_per_core", lambda: 9.0)
    installed(select.Selector("measure", select.Cache(machine), fixed_timer({"fast": 2.0, "plain": 1.0}, calls)))
    with select.recorded_in(run / select.KERNELS_FILE):
        assert double_path().choose(torch.ones(8)).name == "plain"
        with select.recorded_in(tmp_path / "inner.json"):
            assert select.selector().cache.file == run / select.KERNELS_FILE
    monkeypatch.setattr(select, "load_per_core", lambda: 0.5)  # quiet: the machine's cache measures again
    installed(select.Selector("measure", select.Cache(machine), fixed_timer({"fast": 1.0, "plain": 2.0}, calls)))
    assert double_path().choose(torch.ones(8)).name == "fast"
    installed(select.Selector("measure", select.Cache(machine), fixed_timer({"fast": 1.0, "plain": 2.0}, calls)))
    with select.recorded_in(run / select.KERNELS_FILE):  # the resumed run, in a new process
        assert double_path().choose(torch.ones(8)).name == "plain"
    assert len(calls) == 2 and not (tmp_path / "inner.json").exists()


def test_a_choice_measured_in_a_run_is_measured_once_for_the_machine(installed, tmp_path):
    """A run's measurement also lands in the machine's cache, so the next run takes it from there: each call is
    measured once a machine, and two runs of one command run the same kernels."""
    calls = []
    machine = tmp_path / "machine.json"
    installed(select.Selector("measure", select.Cache(machine), fixed_timer({"fast": 1.0, "plain": 2.0}, calls)))
    for run in ("first", "second"):
        with select.recorded_in(tmp_path / run / select.KERNELS_FILE):
            assert double_path().choose(torch.ones(8)).name == "fast"
    assert len(calls) == 1  # the second run took the first's measurement from the machine's cache
    machine_choices = json.loads(machine.read_text())["choices"]
    assert [c["chosen"] for c in machine_choices.values()] == ["fast"]
    assert json.loads((tmp_path / "second" / select.KERNELS_FILE).read_text())["choices"] == machine_choices


def test_a_cache_in_a_folder_that_cannot_be_written_still_reads_its_seed_and_says_so_once(tmp_path, caplog):
    machine = tmp_path / "machine.json"
    select.Cache(machine).put("a|x", select.Choice("fast", {"fast": 1.0, "plain": 2.0}))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the run folder would be")
    cache = select.Cache(blocked / select.KERNELS_FILE, seed=machine)
    assert cache.get("a|x").chosen == "fast"
    assert cache.put("b|y", select.Choice("plain")).chosen == "plain"  # kept in memory, said in the log
    assert cache.get("b|y").chosen == "plain"
    said = [r for r in caplog.records if "cannot save kernel choices" in r.getMessage()]
    assert len(said) == 1 and str(blocked) in said[0].getMessage()  # one line for the cache, not one per choice
