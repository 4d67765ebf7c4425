"""Ready-made corpora, downloaded on first use and cached (``$GENPT_CACHE`` or ``~/.cache/genpt``)."""

from genpt.datasets.shakespeare import FIRST_FOLIO_GENRES, Play, fetch_shakespeare

__all__ = ["FIRST_FOLIO_GENRES", "Play", "fetch_shakespeare"]
