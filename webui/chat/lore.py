"""Which lorebook entries go into a chat turn's prompt.

An entry is triggered when one of its keys appears in the last `scan_depth` messages
(case-insensitive unless the entry says otherwise; a key "dragon" matches "dragons",
as in SillyTavern and the card spec) and, for a selective entry, its secondary keys
match as its logic says; a constant entry always is. Triggered entries are taken in
insertion_order (lower first) until the token budget is spent: each book's own
`token_budget`, and all books together at most a quarter of the context
(SillyTavern's default share), counted with the loaded model's tokenizer. The entries
that fit go before or after the character's description (prompts.py).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from webui.characters.character import Character
from webui.characters.lorebook import Lorebook, LoreEntry, character_lorebook
from webui.characters.lorebooks import LorebookStore

log = logging.getLogger(__name__)

DEFAULT_SCAN_DEPTH = 2  # SillyTavern's default: the newest two messages
CONTEXT_SHARE = 4  # all lorebooks together get at most 1/4 of the context


@dataclass(frozen=True)
class LoreInsert:
    book: str
    entry: LoreEntry
    tokens: int  # counted with the model's tokenizer; 0 when not counted yet

    @property
    def label(self) -> str:
        return self.entry.label


@dataclass(frozen=True)
class LoreSelection:
    inserted: tuple[LoreInsert, ...] = ()
    over_budget: tuple[str, ...] = ()  # labels of entries triggered but left out for the budget

    def text(self, position: str) -> str:
        return "\n".join(i.entry.content.strip() for i in self.inserted
                         if i.entry.position == position and i.entry.content.strip())

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.inserted)


NO_LORE = LoreSelection()


def triggered(books: Sequence[Lorebook], messages: Sequence[dict[str, Any]]) -> list[tuple[str, LoreEntry]]:
    """(book name, entry) of every entry the chat's recent messages trigger, in insertion order."""
    found: list[tuple[int, int, str, LoreEntry]] = []
    seen = 0
    for book in books:
        depth_texts: dict[int, tuple[str, str]] = {}
        for entry in book.entries:
            seen += 1
            if not entry.enabled or not entry.content.strip():
                continue
            depth = entry.scan_depth or book.scan_depth or DEFAULT_SCAN_DEPTH
            if depth not in depth_texts:
                text = "\n".join(str(m.get("content", "")) for m in messages[-depth:])
                depth_texts[depth] = (text, text.casefold())
            if entry.constant or _matches(entry, *depth_texts[depth]):
                found.append((entry.insertion_order, seen, book.name, entry))
    found.sort(key=lambda f: (f[0], f[1]))
    return [(name, entry) for _, _, name, entry in found]


def select_lore(books: Sequence[Lorebook], messages: Sequence[dict[str, Any]],
                count: Callable[[str], int] | None = None, context_length: int = 0) -> LoreSelection:
    """The triggered entries that fit the budgets. Without `count` (rendering ahead,
    off the worker, where there is no tokenizer) every triggered entry is kept."""
    hits = triggered(books, messages)
    if count is None:
        return LoreSelection(tuple(LoreInsert(name, entry, 0) for name, entry in hits))
    budgets = {b.name: b.token_budget for b in books}
    total_left = context_length // CONTEXT_SHARE if context_length else None
    used: dict[str, int] = {}
    inserted, left_out = [], []
    for name, entry in hits:
        tokens = count(entry.content.strip()) + 1  # +1: the line break between entries
        book_left = None if budgets.get(name) is None else budgets[name] - used.get(name, 0)
        if (book_left is not None and tokens > book_left) or (total_left is not None and tokens > total_left):
            left_out.append(entry.label)
            continue
        inserted.append(LoreInsert(name, entry, tokens))
        used[name] = used.get(name, 0) + tokens
        if total_left is not None:
            total_left -= tokens
    return LoreSelection(tuple(inserted), tuple(left_out))


def _matches(entry: LoreEntry, text: str, folded: str) -> bool:
    def has(key: str) -> bool:
        return key in text if entry.case_sensitive else key.casefold() in folded

    if not any(has(k) for k in entry.keys):
        return False
    if not entry.selective or not entry.secondary_keys:
        return True
    hits = [has(k) for k in entry.secondary_keys]
    return {"and_any": any(hits), "and_all": all(hits), "not_any": not any(hits),
            "not_all": not all(hits)}.get(entry.selective_logic, any(hits))


def chat_lorebooks(character: Character | None, chosen: Sequence[str],
                   store: LorebookStore | None) -> tuple[Lorebook, ...]:
    """The books a turn scans: the character's own (its card's character_book), the
    standalone ones chosen for the character, then those the chat chose. A chosen book
    deleted since is skipped; a broken one (or a broken character_book) raises its
    one-line LorebookError."""
    books = []
    own = character_lorebook(character.card, character.name) if character is not None else None
    if own is not None:
        books.append(own)
    names = [*(character_lorebook_names(character) if character is not None else []), *chosen]
    for name in dict.fromkeys(names):
        if store is None or name not in store.names():
            log.warning("lorebook %r is gone; the chat goes on without it", name)
            continue
        books.append(store.load(name))
    return tuple(books)


def saved_names(value: Any) -> list[str]:
    """A chat file's `lorebooks` as this version reads it (names; anything else: none)."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and v.strip()][:100]


def character_lorebook_names(character: Character) -> list[str]:
    """The standalone lorebooks chosen for a character, kept in its card's extensions
    (where the card spec keeps each app's own data, so an exported card carries them)."""
    hearth = (character.card.get("extensions") or {}).get("hearth") if isinstance(
        character.card.get("extensions"), dict) else None
    return saved_names(hearth.get("lorebooks")) if isinstance(hearth, dict) else []


def with_lorebook_names(character: Character, names: Sequence[str]) -> Character:
    """A copy of the character using these standalone lorebooks."""
    extensions = dict(character.card.get("extensions") or {}) if isinstance(
        character.card.get("extensions"), dict) else {}
    hearth = dict(extensions.get("hearth") or {}) if isinstance(extensions.get("hearth"), dict) else {}
    hearth["lorebooks"] = list(dict.fromkeys(names))
    extensions["hearth"] = hearth
    return dataclasses.replace(character, card={**character.card, "extensions": extensions})
