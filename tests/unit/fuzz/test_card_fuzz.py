"""Property-based fuzzing of the character card parser: mutations of a real card (the
shipped Ember, exported as a V2 PNG) at the PNG, base64 and JSON level give a
character or one CardError line, never another exception, and generated nested JSON
is imported up to the depth bound and refused past it. Bounded in time: a few
seconds in all. No example writes a file (`database=None`: no .hypothesis folder)."""
from __future__ import annotations

import base64
import json
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.characters.test_character_cards import card_png
from webui.characters.cards import MAX_CARD_DEPTH, CardError, import_card, read_card_json, write_card
from webui.characters.store import CharacterStore
from webui.userdata.folders import SHIPPED_CHARACTERS

EXTREME_TEXT = ["[" * 5000, "{\"a\":" * 5000, "\"\\ud800\"", "1e999999", "-0", "\x00", "\"" + "x" * 70 + "\"",
                "null", "[]", "{}", "\"../x\""]


@lru_cache(maxsize=1)
def real_card() -> bytes:
    ember = CharacterStore(SHIPPED_CHARACTERS, SHIPPED_CHARACTERS / "no-user-dir").load("Ember")
    return write_card(ember, ember.avatar_path.read_bytes())


@lru_cache(maxsize=1)
def real_json() -> bytes:
    return json.dumps(read_card_json(real_card())).encode()


def imports_or_one_line(png: bytes) -> None:
    try:
        character, avatar = import_card(png)
    except CardError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert character.name and avatar


def splice(data: bytes, pos: int, length: int, insert: bytes) -> bytes:
    pos = min(pos, len(data))
    return data[:pos] + insert + data[pos + length:]


@settings(max_examples=300, deadline=None, database=None)
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 8), st.binary(max_size=8)),
                      min_size=1, max_size=4))
def test_mutated_card_pngs_import_or_fail_in_one_line(edits):
    png = real_card()
    for pos, length, insert in edits:
        png = splice(png, pos % (len(png) + 1), length, insert)
    imports_or_one_line(png)


@settings(max_examples=300, deadline=None, database=None)
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 8),
                                st.one_of(st.binary(max_size=8), st.sampled_from(EXTREME_TEXT).map(str.encode))),
                      min_size=1, max_size=4),
       as_text=st.booleans())
def test_mutated_card_json_imports_or_fails_in_one_line(edits, as_text):
    text = real_json()
    for pos, length, insert in edits:
        text = splice(text, pos % (len(text) + 1), length, insert)
    payload = base64.b64encode(text)
    if not as_text:  # mutate the base64 itself instead, after encoding the real JSON
        payload = base64.b64encode(real_json())
        for pos, length, insert in edits:
            payload = splice(payload, pos % (len(payload) + 1), length, insert)
    imports_or_one_line(card_png(payload))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=15)


def depth(value) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    if children is None:
        return 0
    return 1 + max((depth(c) for c in children), default=0)


@settings(max_examples=300, deadline=None, database=None)
@given(value=json_values, wrapping=st.integers(0, 40))
def test_generated_nesting_imports_to_the_bound_and_is_refused_past_it(value, wrapping):
    for i in range(wrapping):
        value = [value] if i % 2 else {"k": value}
    card = {"spec": "chara_card_v2", "data": {"name": "Nested", "extensions": {"x": value}}}
    png = card_png(base64.b64encode(json.dumps(card).encode()))
    if depth(card) <= MAX_CARD_DEPTH:
        character, _ = import_card(png)
        assert character.card["extensions"]["x"] == value
    else:
        try:
            import_card(png)
        except CardError as e:
            assert "nested more than" in str(e)
        else:
            raise AssertionError(f"a card {depth(card)} levels deep was imported")
