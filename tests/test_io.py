"""Atomic writes leave the old file or folder whole when a write fails; JSON errors name the file."""

import json

import pytest

from genpt import io
from genpt.errors import GenptError


def test_a_write_that_fails_midway_leaves_the_old_file_intact_and_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}')
    with pytest.raises(RuntimeError), io.atomic_path(path) as tmp:
        tmp.write_text('{"new": tr')  # half of the new content, then the writer fails
        raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_value_json_cannot_encode_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "state.json"
    io.write_json(path, {"step": 1})
    with pytest.raises(TypeError):
        io.write_json(path, {"step": object()})
    assert json.loads(path.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_completed_write_replaces_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    io.write_text(path, "first")
    io.write_text(path, "second, ünïcode")
    assert path.read_text(encoding="utf-8") == "second, ünïcode"


def test_a_folder_that_fails_midway_leaves_the_old_folder_intact(tmp_path):
    target = tmp_path / "checkpoint"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), io.atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"new")
        raise KeyboardInterrupt
    assert (target / "a.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_a_completed_folder_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "out"
    with io.atomic_dir(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with io.atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_leftovers_of_a_killed_write_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "best"
    target.mkdir()
    (tmp_path / ".best.0123456789ab.tmp").mkdir()  # a folder write killed midway
    (tmp_path / ".best.0123456789ab.old").mkdir()  # a swap killed after the new one took its place
    (tmp_path / ".notes.txt.0123456789ab.tmp").write_text("x")  # another file's
    (tmp_path / ".best.keep").write_text("x")
    io.remove_leftovers(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.keep", ".notes.txt.0123456789ab.tmp", "best"]


@pytest.mark.parametrize("content, message", [
    (None, r"missing\.json: missing; a genpt checkpoint holds it$"),
    (b'{"a": 1,', r"bad\.json: not valid JSON \(Expecting property name"),
    (b'{"a": "\xff"}', r"bad\.json: not UTF-8 text \(invalid start byte at byte 7\)"),
])
def test_a_bad_json_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / ("missing.json" if content is None else "bad.json")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GenptError, match=message) as e:
        io.read_json(path, "a genpt checkpoint holds it")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_folder_given_as_a_json_file_is_named(tmp_path):
    with pytest.raises(GenptError, match="a folder, expected a JSON file"):
        io.read_json(tmp_path)

