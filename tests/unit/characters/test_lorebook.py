"""Lorebook formats: a card's character_book (V2/V3), SillyTavern's world info file,
a lorebook_v3 export; bad files refused with one line; the user's lorebook folder."""
from __future__ import annotations

import json

import pytest

from webui.characters.lorebook import LorebookError, character_lorebook, lorebook_from_json, read_lorebook
from webui.characters.lorebooks import LorebookStore

# As the chara_card_v2 spec writes a character_book.
CHARACTER_BOOK = {
    "name": "Realm", "scan_depth": 3, "token_budget": 200, "recursive_scanning": False, "extensions": {},
    "entries": [
        {"keys": ["dragon", "wyrm"], "content": "Dragons sleep under the Ash Hills.", "extensions": {},
         "enabled": True, "insertion_order": 10, "case_sensitive": False, "name": "Dragons",
         "priority": 5, "id": 1, "comment": "", "selective": True, "secondary_keys": ["gold"],
         "constant": False, "position": "after_char"},
        {"keys": ["Hearth"], "content": "The Hearth is a tavern.", "extensions": {"scan_depth": 6},
         "enabled": False, "insertion_order": 5, "case_sensitive": True},
        {"keys": ["x.*"], "content": "regex", "extensions": {}, "enabled": True, "insertion_order": 1,
         "use_regex": True},
    ],
}

# As SillyTavern exports a world info file.
SILLYTAVERN = {"entries": {
    "0": {"uid": 0, "key": ["castle"], "keysecondary": ["night", "moon"], "comment": "Castle at night",
          "content": "The castle gates close at dusk.", "constant": False, "selective": True,
          "selectiveLogic": 3, "order": 50, "position": 0, "disable": False, "probability": 100,
          "depth": 4, "caseSensitive": None, "scanDepth": 5},
    "1": {"uid": 1, "key": [], "keysecondary": [], "comment": "World", "content": "Magic is rare.",
          "constant": True, "selective": False, "order": 1, "position": 4, "disable": False},
}}


def test_a_cards_character_book():
    book = character_lorebook({"character_book": CHARACTER_BOOK}, "Ember")
    assert (book.name, book.scan_depth, book.token_budget) == ("Ember's lorebook", 3, 200)
    dragons, hearth = book.entries  # the regex entry is left out: its keys are not run
    assert dragons.keys == ("dragon", "wyrm") and dragons.secondary_keys == ("gold",)
    assert (dragons.selective, dragons.position, dragons.insertion_order, dragons.label) == \
        (True, "after_char", 10, "Dragons")
    assert (hearth.enabled, hearth.case_sensitive, hearth.scan_depth, hearth.position) == \
        (False, True, 6, "before_char")
    assert character_lorebook({}, "Ember") is None


def test_sillytavern_world_info():
    book = read_lorebook(json.dumps(SILLYTAVERN).encode(), "world")
    castle, world = book.entries
    assert castle.keys == ("castle",) and castle.secondary_keys == ("night", "moon")
    assert (castle.selective_logic, castle.position, castle.scan_depth, castle.insertion_order) == \
        ("and_all", "before_char", 5, 50)
    assert world.constant and world.position == "after_char" and world.label == "World"


def test_a_lorebook_v3_export_is_the_book_inside():
    book = lorebook_from_json({"spec": "lorebook_v3", "data": CHARACTER_BOOK}, "realm")
    assert [e.label for e in book.entries] == ["Dragons", "Hearth"]


@pytest.mark.parametrize("raw, says", [
    (b"\xff", "not valid JSON"),
    (b"[1, 2]", "a JSON object with 'entries'"),
    (b'{"name": "x"}', "has no 'entries'"),
    (json.dumps({"entries": [{"keys": "a", "content": {"x": 1}}]}).encode(), "content must be text"),
    (json.dumps({"entries": [{"keys": [["a"]], "content": "c"}]}).encode(), "keys must be a list"),
    (json.dumps({"entries": {"0": {"key": ["a"], "order": "high"}}}).encode(), "order must be a number"),
    (b"[" * 100 + b"]" * 100, "nested more than"),
])
def test_a_bad_lorebook_is_one_line(raw, says):
    with pytest.raises(LorebookError) as e:
        read_lorebook(raw, "bad")
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_lorebook_folder(tmp_path):
    store = LorebookStore(tmp_path / "lorebooks")
    assert store.names() == []
    store.import_file(json.dumps(SILLYTAVERN).encode(), "World")
    assert store.names() == ["World"]
    assert len(store.load("World").entries) == 2
    assert store.load("World") is store.load("World")  # parsed once while unchanged
    store.import_file(json.dumps({"entries": [{"keys": ["x"], "content": "changed"}]}).encode(), "World")
    assert store.load("World").entries[0].content == "changed"
    with pytest.raises(LorebookError, match="no lorebook named"):
        store.load("Missing")
    with pytest.raises(LorebookError, match="not a valid lorebook name"):
        store.load("../etc")
    with pytest.raises(LorebookError):
        store.import_file(b"{}", "Empty")
    assert store.names() == ["World"]  # nothing written for a bad file
