"""Reading uploaded files (.txt, .md, .pdf) and cutting them into passages small
enough to embed and to quote: about CHUNK_WORDS words each, overlapping a little so
a fact cut in two is whole in one of them. Each passage keeps where it came from
(page for PDFs, lines for text) so the reply can cite it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webui.extensions.api import FileTextError, clean_name, decode_text, read_pdf_pages

TEXT_TYPES = (".txt", ".md", ".markdown")
FILE_TYPES = TEXT_TYPES + (".pdf",)
CHUNK_WORDS = 100
OVERLAP_WORDS = 20
MAX_FILE_BYTES = 20 * 1024 * 1024


# A file cannot be read as a document (one line, for the UI). Hearth's own file
# reading raises it, shared with the chat's attachments.
DocumentError = FileTextError


@dataclass(frozen=True)
class Passage:
    source: str  # the file's name
    where: str  # "lines 3-14", "page 2"
    text: str

    @property
    def label(self) -> str:
        return f"{self.source}, {self.where}"


@dataclass(frozen=True)
class Section:
    """A run of text with one location: a page of a PDF, or a paragraph (lines)."""
    text: str
    first_line: int
    last_line: int
    page: int | None = None


def read_sections(path: Path, name: str | None = None) -> list[Section]:
    name = name or path.name
    suffix = Path(name).suffix.lower()
    if suffix not in FILE_TYPES:
        raise DocumentError(f"{name}: only {', '.join(FILE_TYPES)} files can be added")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DocumentError(f"{name}: cannot be read ({e.strerror or e})") from None
    if size > MAX_FILE_BYTES:
        raise DocumentError(f"{name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB")
    if suffix == ".pdf":
        return [Section(text, 0, 0, page=i) for i, text in enumerate(read_pdf_pages(path, name), 1)
                if text.strip()]
    return _text_sections(decode_text(path.read_bytes(), name, strict=False))


def _text_sections(text: str) -> list[Section]:
    """Paragraphs (blank-line separated), with their line numbers (1-based)."""
    sections, block, first = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if not block:
                first = number
            block.append(line)
        elif block:
            sections.append(Section("\n".join(block), first, number - 1))
            block = []
    if block:
        sections.append(Section("\n".join(block), first, first + len(block) - 1))
    return sections


def split_passages(sections: list[Section], source: str, words_per_chunk: int = CHUNK_WORDS,
                   overlap: int = OVERLAP_WORDS) -> list[Passage]:
    """Consecutive sections packed into passages of about `words_per_chunk` words;
    a longer section is cut with `overlap` words shared by neighbours."""
    passages: list[Passage] = []
    pending: list[Section] = []
    count = 0

    def flush() -> None:
        nonlocal pending, count
        if pending:
            passages.append(Passage(source, _where(pending[0], pending[-1]),
                                    "\n\n".join(s.text for s in pending)))
        pending, count = [], 0

    for section in sections:
        words = section.text.split()
        if len(words) > words_per_chunk:
            flush()
            step = max(words_per_chunk - overlap, 1)
            for start in range(0, len(words), step):
                piece = " ".join(words[start:start + words_per_chunk])
                passages.append(Passage(source, _where(section, section), piece))
                if start + words_per_chunk >= len(words):
                    break
            continue
        if pending and (pending[0].page != section.page or count + len(words) > words_per_chunk):
            flush()
        pending.append(section)
        count += len(words)
    flush()
    return passages


def _where(first: Section, last: Section) -> str:
    if first.page is not None:
        return f"page {first.page}" if first.page == last.page else f"pages {first.page}-{last.page}"
    if first.first_line == last.last_line:
        return f"line {first.first_line}"
    return f"lines {first.first_line}-{last.last_line}"


__all__ = ["DocumentError", "FILE_TYPES", "Passage", "Section", "clean_name", "read_sections",
           "split_passages"]
