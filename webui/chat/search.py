"""Search across every chat of one user (titles and message texts), each hit with the
words around it.

Chats are files (`histories/<character>/<id>.json`), newest first. A file is parsed
only when its raw text holds every word of the query: most chats do not, and reading
bytes is several times cheaper than parsing JSON (bench/chat_search.py). The search
stops at MAX_HITS chats, so a common word does not read the whole folder either.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from webui.userdata.folders import UserData

log = logging.getLogger(__name__)

MAX_HITS = 50  # chats shown for one search, newest first
CONTEXT_CHARS = 60  # characters of the message shown on each side of the hit
MAX_QUERY_CHARS = 200
_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


@dataclass(frozen=True)
class SearchHit:
    character: str
    chat_id: str
    title: str
    updated: float
    where: str  # "title", or the role of the message that matched ("user", "assistant", "system")
    before: str  # the text before the match, after the match, and the match itself
    match: str
    after: str

    @property
    def key(self) -> str:
        """What opens the chat: "character/chat id"."""
        return f"{self.character}/{self.chat_id}"

    @property
    def snippet(self) -> str:
        return f"{self.before}{self.match}{self.after}"

    @property
    def label(self) -> str:
        when = time.strftime("%Y-%m-%d", time.localtime(self.updated))
        return f"{self.title} · {self.character} · {when} — “{self.snippet}”"


def _prefilter(raw_lower: bytes, typed: list[str]) -> bool:
    """False only when the chat cannot match. A chat file is UTF-8 JSON written with
    ensure_ascii=False, so a word appears in its bytes as typed, unless it holds a
    character JSON escapes (a quote, a backslash) or the file escapes non-ASCII (\\u).
    bytes.lower() folds only ASCII, and is several times faster than decoding and
    folding the whole file (bench/chat_search.py); a word with other letters is left
    to the parse. Matching is str.lower() (as the prefilter folds ASCII), not
    casefold(), which would make "STRASSE" match "Straße" behind its back."""
    if b"\\u" in raw_lower:
        return True
    return all(w.lower().encode() in raw_lower for w in typed if w.isascii() and '"' not in w and "\\" not in w)


def _chat_files(root: Path) -> list[tuple[float, Path]]:
    found = []
    try:
        folders = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for folder in folders:
        if not folder.is_dir():
            continue
        try:
            entries = list(os.scandir(folder.path))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".json") and _ID.match(entry.name[:-5]):
                try:
                    found.append((entry.stat().st_mtime, Path(entry.path)))
                except FileNotFoundError:  # deleted meanwhile
                    continue
    found.sort(key=lambda t: t[0], reverse=True)
    return found


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _context(text: str, start: int, end: int) -> tuple[str, str, str]:
    """(before, match, after): up to CONTEXT_CHARS each side, on one line, "…" where cut."""
    before = _squash(text[max(0, start - CONTEXT_CHARS):start]).lstrip()
    if start > CONTEXT_CHARS:
        before = "…" + before
    after = _squash(text[end:end + CONTEXT_CHARS]).rstrip()
    if end + CONTEXT_CHARS < len(text.rstrip()):
        after += "…"
    return before, _squash(text[start:end]), after


def _hit(path: Path, data: dict, words: list[str]) -> SearchHit | None:
    title = str(data.get("title") or "Chat")
    texts = [("title", title)]
    messages = data.get("messages")
    if isinstance(messages, list):
        texts += [(str(m.get("role")), m["content"]) for m in messages
                  if isinstance(m, dict) and isinstance(m.get("content"), str)]
    folded = [t.lower() for _, t in texts]
    if not all(any(w in f for f in folded) for w in words):
        return None
    # The text that holds the most of the words shows the hit (the first such, in order).
    best = max(range(len(texts)), key=lambda i: (sum(w in folded[i] for w in words), -i))
    where, text = texts[best]
    word = next(w for w in words if w in folded[best])
    start = folded[best].index(word)
    # lower() keeps offsets for all but a few letters (İ -> i̇); clamp to the text.
    start, end = min(start, len(text)), min(start + len(word), len(text))
    before, match, after = _context(text, start, end)
    updated = data.get("updated")
    return SearchHit(path.parent.name, path.stem, title,
                     float(updated) if isinstance(updated, (int, float)) else path.stat().st_mtime,
                     where, before, match, after)


def search_chats(user_data: UserData, query: str, limit: int = MAX_HITS) -> list[SearchHit]:
    """The chats whose title or messages hold every word of `query` (any case), newest
    first, at most `limit`; each with the best-matching text around the hit."""
    typed = (query or "")[:MAX_QUERY_CHARS].split()
    words = [w.lower() for w in typed]
    if not words:
        return []
    hits = []
    for _, path in _chat_files(user_data.histories):
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if not _prefilter(raw.lower(), typed):
            continue
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("chat file %s is damaged: left out of the search", path.name)
            continue
        hit = _hit(path, data, words) if isinstance(data, dict) else None
        if hit is not None:
            hits.append(hit)
            if len(hits) >= limit:
                break
    return hits
