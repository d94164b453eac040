"""Lorebooks (world info): entries of background text that go into the prompt when
their keys come up in the chat.

Two formats are read, both untrusted uploads:

- a card's `character_book` (chara_card_v2, and V3's, which adds fields Hearth does
  not need): `entries` is a list of {keys, content, enabled, insertion_order,
  case_sensitive, name, selective, secondary_keys, constant, position, ...}, and the
  book may set `scan_depth` and `token_budget`. A standalone export wraps it as
  {"spec": "lorebook_v3", "data": {...}}, or is the bare book.
- SillyTavern's world info file: `entries` is an object of uid -> {key, keysecondary,
  content, constant, selective, selectiveLogic, order, position, disable, comment,
  caseSensitive, scanDepth, ...}.

Both become one `Lorebook`; what each entry means for the prompt is chat/lore.py's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webui.characters.cards import nesting_problem
from webui.errors import ErrorKind, UserError

MAX_LOREBOOK_BYTES = 8 << 20  # the largest lorebooks shared online are a few MiB
MAX_ENTRIES = 5000
MAX_KEYS = 100  # per entry
POSITIONS = ("before_char", "after_char")
# How SillyTavern's `selectiveLogic` numbers read: how the secondary keys must match.
SELECTIVE_LOGIC = {0: "and_any", 1: "not_all", 2: "not_any", 3: "and_all"}
# SillyTavern's `position`: 0 before the character, 1 after it; the others (the
# author's note, a depth in the chat) have no place in Hearth's prompts yet and go after.
_ST_POSITIONS = {0: "before_char", 1: "after_char"}


class LorebookError(UserError, ValueError):
    """A lorebook file or a card's character_book is unusable (one line)."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class LoreEntry:
    keys: tuple[str, ...]
    content: str
    name: str = ""
    secondary_keys: tuple[str, ...] = ()
    selective: bool = False  # the secondary keys must match too (as selective_logic says)
    selective_logic: str = "and_any"
    constant: bool = False  # inserted whatever the chat says
    enabled: bool = True
    insertion_order: int = 100  # lower goes first, and is inserted first within the budget
    position: str = "before_char"
    case_sensitive: bool = False
    scan_depth: int | None = None  # this entry's own, else the book's

    @property
    def label(self) -> str:
        """What the budget and prompt views call the entry."""
        if self.name.strip():
            return self.name.strip()
        if self.keys:
            return self.keys[0]
        return self.content.strip()[:24] or "(empty)"


@dataclass(frozen=True)
class Lorebook:
    name: str
    entries: tuple[LoreEntry, ...]
    scan_depth: int | None = None  # how many recent messages are searched for keys
    token_budget: int | None = None  # at most this many tokens of this book's entries


def read_lorebook(raw: bytes, name: str) -> Lorebook:
    """A lorebook file (either format), checked completely."""
    if len(raw) > MAX_LOREBOOK_BYTES:
        raise LorebookError(f"the lorebook is {len(raw) >> 20} MiB; at most {MAX_LOREBOOK_BYTES >> 20} MiB "
                            "are allowed")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LorebookError(f"the lorebook is not valid JSON: {e}") from None
    except RecursionError:
        raise LorebookError("the lorebook's JSON is nested too deeply") from None
    problem = nesting_problem(data)
    if problem:
        raise LorebookError(f"the lorebook's JSON {problem}")
    return lorebook_from_json(data, name)


def lorebook_from_json(data: Any, name: str) -> Lorebook:
    if not isinstance(data, dict):
        raise LorebookError("a lorebook is a JSON object with 'entries'")
    if isinstance(data.get("data"), dict) and "entries" not in data:
        data = data["data"]  # {"spec": "lorebook_v3", "data": {...}}
    entries = data.get("entries")
    if isinstance(entries, list):
        return from_character_book(data, name)
    if isinstance(entries, dict):
        return from_sillytavern(data, name)
    raise LorebookError("the lorebook has no 'entries' (a list, or SillyTavern's object of entries)")


def from_character_book(book: Any, name: str) -> Lorebook:
    """A card's character_book (V2 or V3)."""
    if not isinstance(book, dict) or not isinstance(book.get("entries"), list):
        raise LorebookError("the character_book has no list of entries")
    raw_entries = book["entries"]
    _check_count(len(raw_entries))
    entries = []
    for i, e in enumerate(raw_entries):
        if not isinstance(e, dict):
            raise LorebookError(f"lorebook entry {i + 1} is not an object")
        if e.get("use_regex"):
            continue  # V3 regex keys: not run here (a stranger's regex can take forever)
        extensions = e.get("extensions")
        entries.append(LoreEntry(
            keys=_keys(e.get("keys"), i), content=_text(e.get("content"), "content", i),
            name=_text(e.get("name") or e.get("comment"), "name", i),
            secondary_keys=_keys(e.get("secondary_keys"), i), selective=bool(e.get("selective")),
            constant=bool(e.get("constant")), enabled=e.get("enabled", True) is not False,
            insertion_order=_int(e.get("insertion_order"), 100, "insertion_order", i),
            position=e.get("position") if e.get("position") in POSITIONS else "before_char",
            case_sensitive=bool(e.get("case_sensitive")),
            # SillyTavern writes an entry's own depth into its extensions.
            scan_depth=_opt_int(extensions.get("scan_depth")) if isinstance(extensions, dict) else None))
    return Lorebook(name, tuple(entries), _opt_int(book.get("scan_depth")), _opt_int(book.get("token_budget")))


def from_sillytavern(data: dict[str, Any], name: str) -> Lorebook:
    """SillyTavern's world info file: {"entries": {"0": {...}, "1": {...}}}."""
    raw = data["entries"]
    _check_count(len(raw))
    entries = []
    for i, (uid, e) in enumerate(raw.items()):
        if not isinstance(e, dict):
            raise LorebookError(f"lorebook entry {uid!r} is not an object")
        entries.append(LoreEntry(
            keys=_keys(e.get("key"), i), content=_text(e.get("content"), "content", i),
            name=_text(e.get("comment"), "comment", i), secondary_keys=_keys(e.get("keysecondary"), i),
            selective=bool(e.get("selective")),
            selective_logic=SELECTIVE_LOGIC.get(e.get("selectiveLogic"), "and_any"),
            constant=bool(e.get("constant")), enabled=not e.get("disable"),
            insertion_order=_int(e.get("order"), 100, "order", i),
            position=_ST_POSITIONS.get(e.get("position"), "after_char"),
            case_sensitive=bool(e.get("caseSensitive")), scan_depth=_opt_int(e.get("scanDepth"))))
    return Lorebook(name, tuple(entries), _opt_int(data.get("scan_depth")), _opt_int(data.get("token_budget")))


def character_lorebook(card: dict[str, Any], character_name: str) -> Lorebook | None:
    """The lorebook a character's card carries (`character_book`), or None."""
    book = card.get("character_book")
    if not book:
        return None
    return from_character_book(book, f"{character_name}'s lorebook")


def _check_count(n: int) -> None:
    if n > MAX_ENTRIES:
        raise LorebookError(f"the lorebook has {n:,} entries; at most {MAX_ENTRIES:,} are allowed")


def _keys(value: Any, i: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # some exporters write one comma-separated string
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(k, (str, int, float)) for k in value):
        raise LorebookError(f"lorebook entry {i + 1}'s keys must be a list of text")
    if len(value) > MAX_KEYS:
        raise LorebookError(f"lorebook entry {i + 1} has more than {MAX_KEYS} keys")
    return tuple(k for k in (str(k).strip() for k in value) if k)


def _text(value: Any, what: str, i: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise LorebookError(f"lorebook entry {i + 1}'s {what} must be text")
    return str(value)


def _int(value: Any, default: int, what: str, i: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LorebookError(f"lorebook entry {i + 1}'s {what} must be a number")
    return int(value)


def _opt_int(value: Any) -> int | None:
    """A depth or budget: a positive whole number, or None for "not set"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)
