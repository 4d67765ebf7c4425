"""strip_gutenberg on every book in ../shared/data/gutenberg and on the older boilerplate variants."""

import gzip

from conftest import shared_data

from genpt.data.gutenberg import strip_gutenberg

BOILERPLATE = (  # lower-case phrases of the licence, the small print and the START/END lines
    "project gutenberg license", "project gutenberg-tm license", "gutenberg.org/license", "small print!",
    "start of the project gutenberg", "start of this project gutenberg", "end of the project gutenberg",
    "end of this project gutenberg", "end of project gutenberg",
)
# Header plus licence come to 15-21k characters in these files; more removed means book was lost.
MAX_BOILERPLATE = 25_000


def boilerplate_in(text: str) -> list[str]:
    lower = text.lower()
    return [phrase for phrase in BOILERPLATE if phrase in lower]


def read_book(name: str) -> str:
    with gzip.open(shared_data("gutenberg", name), "rt", encoding="utf-8") as f:
        return f.read()


def test_every_shared_book_loses_header_and_licence_but_keeps_the_book():
    books = sorted(shared_data("gutenberg").glob("*.txt.gz"))
    assert len(books) > 50
    problems = []
    for path in books:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
        assert boilerplate_in(text), f"{path.name} has no licence to strip: the check proves nothing"
        body = strip_gutenberg(text)
        removed = len(text) - len(body)
        if boilerplate_in(body):
            problems.append(f"{path.name}: boilerplate left: {boilerplate_in(body)}")
        if removed > MAX_BOILERPLATE or (len(text) > 5 * MAX_BOILERPLATE and len(body) < 0.8 * len(text)):
            problems.append(f"{path.name}: {removed} of {len(text)} characters removed")
        if not body.strip() or body.startswith("\n") or not body.endswith("\n") or body.endswith("\n\n"):
            problems.append(f"{path.name}: blank lines at the ends, or empty")
    assert problems == []


def test_book_starts_after_start_line_and_ends_before_end_of_line():
    body = strip_gutenberg(read_book("11-0.txt.gz"))
    assert body.startswith("ALICE’S ADVENTURES IN WONDERLAND\n")
    assert body.endswith("THE END\n")
    assert "End of Project Gutenberg’s" not in body


def test_start_line_whose_title_wraps_onto_the_next_line():
    # "*** START OF THIS PROJECT GUTENBERG EBOOK\nTHE STRANGE CASE OF DR. JEKYLL AND MR. HYDE ***"
    body = strip_gutenberg(read_book("43-0.txt.gz"))
    assert body.startswith("Produced by David Widger\n")


def test_2003_file_with_title_line_and_small_print_at_the_end():
    body = strip_gutenberg(read_book("pg4657.txt.gz"))
    assert body.startswith("This etext was produced by")
    assert body.endswith("linguist.\n\nEND OF VOLUME I.\n")
    assert "This file should be named" not in body and "Gutenberg" not in body


def test_crlf_line_endings_give_the_same_book():
    for name in ("11-0.txt.gz", "43-0.txt.gz", "pg4657.txt.gz", "pg108.txt.gz"):
        text = read_book(name)
        crlf = strip_gutenberg(text.replace("\n", "\r\n"))
        assert "\r\n" in crlf
        assert crlf.replace("\r\n", "\n") == strip_gutenberg(text), name


def test_1990s_small_print_header_and_etext_footer():
    text = (
        "The Project Gutenberg Etext of Hamlet, by William Shakespeare\n"
        "*******This file should be named 2ws2610.txt or 2ws2610.zip******\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n"
        'Why is this "Small Print!" statement here?  You know: lawyers.\n'
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n\n"
        "HAMLET, PRINCE OF DENMARK\n\n  Ham. The rest is silence.\n\n"
        "End of the Project Gutenberg Etext of Hamlet, Prince of Denmark\n"
    )
    assert strip_gutenberg(text) == "HAMLET, PRINCE OF DENMARK\n\n  Ham. The rest is silence.\n"


def test_start_line_without_space_after_the_stars():
    text = "header\n***START OF THE PROJECT GUTENBERG EBOOK JANE EYRE***\nReader, I married him.\n" \
        "***END OF THE PROJECT GUTENBERG EBOOK JANE EYRE***\nlicence\n"
    assert strip_gutenberg(text) == "Reader, I married him.\n"


def test_footer_alone_is_removed():
    text = "  A book with its header already gone.\n\nEnd of Project Gutenberg's Book, by Someone\nlicence\n"
    assert strip_gutenberg(text) == "  A book with its header already gone.\n"


def test_last_line_without_newline_stays_so():
    assert strip_gutenberg("*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\nBody") == "Body"


def test_text_without_markers_is_returned_unchanged():
    for text in ("", "\n\n", "Just a poem,\r\nwith lines.\r\n\r\n",
                 "The Project Gutenberg EBook of X starts here but has no START line.\nBody.\n"):
        assert strip_gutenberg(text) == text
