"""genpt.train.run_dir: under torchrun every rank checks the run folder while rank 0 may be writing into it;
a check that races rank 0's first write must still see a new run, never "files that are not a genpt run"."""

from pathlib import Path

import pytest

from genpt import io
from genpt.errors import GenptError
from genpt.io import LOCK_FILE
from genpt.train.run_dir import check_run_dir


def test_a_rank_checking_while_rank_0_writes_the_settings_sees_a_new_run(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).touch()  # rank 0 holds the folder and is about to write config.json
    real_iterdir = Path.iterdir
    looks = []

    def rank_0_writes_before_a_second_look(self: Path):
        if self == run:
            looks.append(self)
            if len(looks) == 2:  # the settings appear between two looks at the folder
                io.write_json(run / "config.json", {"model": {}})
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", rank_0_writes_before_a_second_look)
    check_run_dir(run, resume=False, settings="config.json", keys={"model"})
    assert len(looks) == 1  # one listing decides


def test_the_users_own_file_of_the_settings_name_is_still_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"mine": 1}')
    with pytest.raises(GenptError, match="not a genpt run"):
        check_run_dir(run, resume=False, settings="config.json", keys={"model"})
