"""The text of a user's file: plain text, Markdown, code, PDF. One copy of this
reading for the chat's attachments (webui/chat/attachments.py) and the documents
extension (through webui/extensions/api.py); every file that cannot be read is one
line a person can act on.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from loaders.errors import ErrorKind, UserError

PDF_SUFFIX = ".pdf"
# Enough of the start of a file to tell text from binary: a text file has no NUL
# byte, almost every binary format (images, archives, executables) has one early.
BINARY_PROBE = 4096


class FileTextError(UserError, ValueError):
    """A file cannot be read as text (one line, for the UI)."""

    kind = ErrorKind.INVALID


def clean_name(name: str, default: str = "document") -> str:
    """A file name as shown and cited: no folders, no control characters."""
    base = re.sub(r"[\x00-\x1f\x7f]", "", Path(name.replace("\\", "/")).name).strip()
    return base[:120] or default


def is_pdf(name: str, head: bytes = b"") -> bool:
    return Path(name).suffix.lower() == PDF_SUFFIX or head.startswith(b"%PDF-")


def decode_text(raw: bytes, name: str, strict: bool = True) -> str:
    """A text file's bytes as text. Binary is refused; so is text that is not UTF-8
    when `strict` (a chat attachment must reach the model as written; the documents
    extension, which only searches, replaces the odd undecodable byte)."""
    if b"\x00" in raw[:BINARY_PROBE]:
        raise FileTextError(f"{name} looks like a binary file, not text")
    try:
        return raw.decode("utf-8-sig", errors="strict" if strict else "replace")
    except UnicodeDecodeError as e:
        raise FileTextError(f"{name} is not UTF-8 text (byte {e.start}); save it as UTF-8 "
                            "or attach a PDF") from None


def read_pdf_pages(source: Path | bytes, name: str) -> list[str]:
    """The text of each page ("" for a page of pictures only), from a file or its bytes."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise FileTextError("reading PDFs needs pypdf: .venv/bin/pip install pypdf") from None
    try:
        reader = PdfReader(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        if reader.is_encrypted:
            raise FileTextError(f"{name} is encrypted; save an unlocked copy first")
        return [page.extract_text() or "" for page in reader.pages]
    except FileTextError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise FileTextError(f"{name} is not a readable PDF ({type(e).__name__}: {e})".splitlines()[0]) from None
