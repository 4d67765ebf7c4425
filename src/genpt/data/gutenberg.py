"""Cut the Project Gutenberg header and licence footer off an e-text, keeping the book itself.

Gutenberg files have changed their boilerplate over the years; the markers handled here are those
seen in real files:

- modern (2008 on): ``*** START OF THE/THIS PROJECT GUTENBERG EBOOK TITLE ***`` (sometimes as
  ``***START OF THE ...``, and with the title wrapped onto the next line), then the book, then
  ``End of (the) Project Gutenberg's/EBook of ...`` and ``*** END OF THE/THIS PROJECT GUTENBERG ...``
  followed by the licence;
- 2002-2004: a ``*** START OF THE PROJECT GUTENBERG ETEXT/EBOOK ...`` line, and at the end a repeated
  title line ``The Project Gutenberg Etext of ...`` and the "legal small print"
  (``***START**THE SMALL PRINT!...``);
- 1990s: the small print in the header, ending ``*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*...``,
  and a closing ``End of (the) Project Gutenberg Etext of ...``.
"""

import re

_FLAGS = re.IGNORECASE | re.MULTILINE
_LEAD = r"^[ \t]*"  # not \s*, which would reach back across blank lines

# Lines that end the header (the header includes the line itself).
_START = re.compile(_LEAD + r"\*+[ \t]*START[ \t]+OF[ \t]+(THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG", _FLAGS)
_SMALL_PRINT_END = re.compile(_LEAD + r"\*+[ \t]*END\W*THE[ \t]+SMALL[ \t]+PRINT", _FLAGS)

# Lines that begin the footer. The strong ones cannot be mistaken for anything else; the weak ones
# also open a file's header, so they only count after a header marker has been found.
_STRONG = (
    r"\*+[ \t]*END[ \t]+OF[ \t]+(THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG"
    r"|End[ \t]+of[ \t]+((the|this)[ \t]+)?Project[ \t]+Gutenberg"
    r"|\*+[ \t]*START:[ \t]*FULL[ \t]+LICEN[CS]E"
)
_WEAK = (
    r"The[ \t]+Project[ \t]+Gutenberg[ \t]+E-?(text|book)[ \t]+of\b"
    r"|\*+[ \t]*START\W*THE[ \t]+SMALL[ \t]+PRINT"
    r"|\**[ \t]*The[ \t]+Legal[ \t]+Small[ \t]+Print[^\w\n]*$"
)
_STRONG_END = re.compile(f"{_LEAD}(?:{_STRONG})", _FLAGS)
_ANY_END = re.compile(f"{_LEAD}(?:{_STRONG}|{_WEAK})", _FLAGS)

# A START line whose title wraps continues on at most this many lines, the last ending in "***".
_MAX_TITLE_LINES = 3
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")
_TRAILING_BLANK_LINES = re.compile(r"(\r?\n)(?:[ \t]*\r?\n)*[ \t]*\Z")


def strip_gutenberg(text: str) -> str:
    """The book inside a Project Gutenberg e-text: header and licence footer removed.

    Blank lines at either end of what remains are dropped; line endings (``\\n`` or ``\\r\\n``)
    are kept as they were. Text with no Gutenberg marker is returned unchanged.
    """
    body_start = _header_end(text)
    footer = (_STRONG_END if body_start is None else _ANY_END).search(text, body_start or 0)
    if body_start is None and footer is None:
        return text
    body = text[body_start or 0 : footer.start() if footer else len(text)]
    body = _LEADING_BLANK_LINES.sub("", body)
    return _TRAILING_BLANK_LINES.sub(r"\1", body)


def _header_end(text: str) -> int | None:
    """Offset of the first line after the header, or None when the text has no header marker."""
    start = _START.search(text)
    if start is not None:
        return _after_wrapped_title(text, start.start())
    # Old files put the small print first and have no START line; a small print that ends after a
    # START line belongs to the footer, which is why this is only the fallback.
    small_print = _SMALL_PRINT_END.search(text)
    return None if small_print is None else _next_line(text, small_print.start())


def _next_line(text: str, pos: int) -> int:
    newline = text.find("\n", pos)
    return len(text) if newline < 0 else newline + 1


def _after_wrapped_title(text: str, pos: int) -> int:
    """Offset after the START line at pos, including the title lines it wraps onto."""
    end = _next_line(text, pos)
    if text[pos:end].rstrip().endswith("*"):
        return end
    title_end = end
    for _ in range(_MAX_TITLE_LINES):
        line_end = _next_line(text, title_end)
        line = text[title_end:line_end].strip()
        if not line:
            break
        if line.endswith("***"):
            return line_end
        title_end = line_end
    return end
