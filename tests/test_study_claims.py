"""Stage claims between `genpt study` processes: a claimed stage is skipped and waited for at the end, a
finished one is never rerun, and a stage whose holder stopped is run by whoever waits for it."""

import threading

from genpt.study.claims import Claims, Later


def test_a_stage_claimed_by_another_process_is_skipped_then_waited_for(tmp_path):
    ran = []
    done = set()

    def stage(name):
        def run():
            ran.append(name)
            done.add(name)
        return run

    other = Claims(tmp_path)  # another open file description: as another process's
    later = Later(Claims(tmp_path))
    with other.hold("a") as mine:
        assert mine
        later.run("a", lambda: "a" in done, stage("a"))
        later.run("b", lambda: "b" in done, stage("b"))
        assert ran == ["b"]  # "a" is the other's: this process went on
        done.add("a")  # the other process finished it
    later.finish()
    assert ran == ["b"]


def test_a_stage_whose_holder_stopped_unfinished_is_run_by_the_waiter(tmp_path):
    ran = []
    later = Later(Claims(tmp_path))
    with Claims(tmp_path).hold("a"):
        later.run("a", lambda: bool(ran), lambda: ran.append("a"))
    later.finish()  # the holder let go without finishing
    assert ran == ["a"]


def test_a_finished_stage_never_runs_and_one_waits_for_its_input(tmp_path):
    ran = []
    later = Later(Claims(tmp_path), poll=0.01)
    later.run("done", lambda: True, lambda: ran.append("done"))
    later.run("input", lambda: "input" in ran, lambda: ran.append("input"))
    assert ran == ["input"]
    inputs = iter([False, False, True])
    later.run("needs input", lambda: "needs input" in ran, lambda: ran.append("needs input"),
              ready=lambda: next(inputs))
    assert ran == ["input"]
    later.finish()  # polls until the input is ready
    assert ran == ["input", "needs input"]


def test_finish_runs_a_free_stage_while_an_earlier_one_is_held_elsewhere(tmp_path):
    ran = []
    held, release = threading.Event(), threading.Event()

    def other_process():
        with Claims(tmp_path).hold("a"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=other_process)
    thread.start()
    held.wait(10)
    later = Later(Claims(tmp_path), poll=0.01)
    later.run("a", lambda: "a" in ran, lambda: ran.append("a"))
    later.waiting.append(("b", lambda: "b" in ran, lambda: (ran.append("b"), release.set()), lambda: True))
    later.finish()  # "b" runs while "a" is held; "a" runs here once the other lets go unfinished
    thread.join()
    assert ran == ["b", "a"]


def test_hold_with_wait_blocks_only_while_held(tmp_path):
    claims = Claims(tmp_path)
    with claims.hold("x") as first:
        assert first
        with Claims(tmp_path).hold("x") as second:
            assert not second
    with Claims(tmp_path).hold("x", wait=True) as third:
        assert third
