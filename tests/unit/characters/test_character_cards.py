"""V2 character cards (PNG + base64 JSON in a `chara` tEXt chunk) and character
files: round trips, and every kind of bad upload refused with one line, writing
nothing."""
from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
import yaml

from webui.characters.cards import (
    MAX_CARD_BYTES,
    PNG_SIGNATURE,
    CardError,
    character_to_card,
    import_card,
    placeholder_png,
    read_card_json,
    write_card,
)
from webui.characters.character import Character, CharacterError
from webui.characters.store import CharacterStore
from webui.userdata.folders import SHIPPED_CHARACTERS

SPEC_CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Ada",
        "description": "{{char}} commands an airship and calls {{user}} 'cadet'.",
        "personality": "brisk, kind",
        "scenario": "The deck of the Skylark at dawn.",
        "first_mes": "Morning, {{user}}! Ready to fly?",
        "mes_example": "<START>\n{{user}}: Where to?\n{{char}}: North, cadet!",
        "creator_notes": "Made for a test.",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["Ahoy!", "Wind's up!"],
        "tags": ["adventure", "airship"],
        "creator": "hearth-tests",
        "character_version": "1.2",
        "extensions": {"depth_prompt": {"depth": 4, "prompt": "Stay brisk."}},
        "character_book": {"entries": [{"keys": ["Skylark"], "content": "An airship.", "enabled": True,
                                        "insertion_order": 0, "extensions": {}}], "extensions": {}},
    },
}


def card_png(payload: bytes, keyword: bytes = b"chara") -> bytes:
    """A real PNG (the placeholder image) carrying `payload` in a tEXt chunk."""
    image = placeholder_png(8)
    data = keyword + b"\x00" + payload
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return image[:33] + chunk + image[33:]


def spec_card_png(card=SPEC_CARD) -> bytes:
    return card_png(base64.b64encode(json.dumps(card).encode()))


@pytest.fixture
def store(tmp_path):
    return CharacterStore(tmp_path / "shipped", tmp_path / "user")


def test_a_spec_card_imports_into_characters_fields():
    character, avatar = import_card(spec_card_png())
    assert character.name == "Captain Ada"
    assert character.context.startswith("{{char}} commands")
    assert character.greeting == "Morning, {{user}}! Ready to fly?"
    assert character.example_dialogue.endswith("North, cadet!")
    assert character.card["tags"] == ["adventure", "airship"]
    assert avatar.startswith(PNG_SIGNATURE) and b"chara" not in avatar  # the bare image is kept
    assert character.fill(character.greeting, "Sam") == "Morning, Sam! Ready to fly?"


def test_card_round_trip_keeps_every_field():
    character, avatar = import_card(spec_card_png())
    exported = write_card(character, avatar)
    assert read_card_json(exported) == SPEC_CARD
    again, _ = import_card(exported)
    assert again == character


def test_a_character_made_in_hearth_round_trips_through_a_card():
    mine = Character(name="Ember", greeting="Hi!", context="A hearth spirit.", personality="warm",
                     scenario="A cottage.", example_dialogue="{{user}}: hi\n{{char}}: hello")
    card = read_card_json(write_card(mine))
    assert card["spec"] == "chara_card_v2" and card["data"]["first_mes"] == "Hi!"
    assert set(card["data"]) >= {"name", "description", "personality", "scenario", "first_mes", "mes_example",
                                 "creator_notes", "system_prompt", "post_history_instructions",
                                 "alternate_greetings", "tags", "creator", "character_version", "extensions"}
    back, _ = import_card(write_card(mine))
    assert (back.name, back.greeting, back.context, back.personality, back.scenario, back.example_dialogue) == \
        (mine.name, mine.greeting, mine.context, mine.personality, mine.scenario, mine.example_dialogue)


def test_a_v1_card_with_fields_at_the_top_level_is_read():
    v1 = {"name": "Old", "description": "An old card.", "first_mes": "Hey."}
    character, _ = import_card(spec_card_png(v1))
    assert (character.name, character.context, character.greeting) == ("Old", "An old card.", "Hey.")


def _bad_crc() -> bytes:
    png = bytearray(spec_card_png())
    png[40] ^= 0xFF  # inside the chara chunk's data
    return bytes(png)


BAD_UPLOADS = {
    "not a PNG": (b"GIF89a" + b"\x00" * 100, "not a PNG"),
    "a JPEG renamed": (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "not a PNG"),
    "no card": (placeholder_png(8), "no character card"),
    "other text chunk": (card_png(b"hello", keyword=b"Comment"), "no character card"),
    "bad base64": (card_png(b"!!!not base64!!!"), "not valid base64"),
    "broken JSON": (card_png(base64.b64encode(b'{"spec": "chara_card_v2", "data": {')), "JSON is broken"),
    "JSON not an object": (card_png(base64.b64encode(b"[1, 2]")), "not an object"),
    "unknown spec": (spec_card_png({"spec": "chara_card_v9", "data": {}}), "unsupported card spec"),
    "v2 without data": (spec_card_png({"spec": "chara_card_v2"}), "no data object"),
    "no name": (spec_card_png({"spec": "chara_card_v2", "data": {"description": "x"}}), "no name"),
    "path traversal": (spec_card_png({"spec": "chara_card_v2", "data": {"name": "../x"}}), "not a valid character name"),
    "absolute path": (spec_card_png({"spec": "chara_card_v2", "data": {"name": "/etc/passwd"}}), "not a valid"),
    "hidden file": (spec_card_png({"spec": "chara_card_v2", "data": {"name": ".bashrc"}}), "not a valid"),
    "NUL in name": (spec_card_png({"spec": "chara_card_v2", "data": {"name": "a\x00b"}}), "not a valid"),
    "long name": (spec_card_png({"spec": "chara_card_v2", "data": {"name": "x" * 200}}), "longer than"),
    "field of wrong type": (spec_card_png({"spec": "chara_card_v2", "data": {"name": "A", "first_mes": ["x"]}}),
                            "must be text"),
    "bad checksum": (_bad_crc(), "bad checksum"),
    "truncated": (spec_card_png()[:60], "truncated"),
    "oversized": (PNG_SIGNATURE + b"\x00" * MAX_CARD_BYTES, "at most 20 MiB"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_bad_upload_gets_one_clear_line_and_writes_nothing(store, case):
    data, message = BAD_UPLOADS[case]
    with pytest.raises(CardError, match=message) as e:
        store.import_card(data)
    assert "\n" not in str(e.value)
    assert not store.user_dir.exists() or not any(store.user_dir.iterdir())


def test_import_saves_yaml_and_avatar_and_never_overwrites(store):
    first = store.import_card(spec_card_png())
    second = store.import_card(spec_card_png())
    assert (first.name, second.name) == ("Captain Ada", "Captain Ada (2)")
    assert sorted(p.name for p in store.user_dir.iterdir()) == [
        "Captain Ada (2).png", "Captain Ada (2).yaml", "Captain Ada.png", "Captain Ada.yaml"]
    data = yaml.safe_load((store.user_dir / "Captain Ada.yaml").read_text())
    assert data["greeting"] == "Morning, {{user}}! Ready to fly?"
    assert store.load("Captain Ada").avatar_path == store.user_dir / "Captain Ada.png"
    # Exporting what was imported gives the same card back.
    exported = write_card(store.load("Captain Ada"), (store.user_dir / "Captain Ada.png").read_bytes())
    assert read_card_json(exported) == SPEC_CARD


def test_store_save_load_delete_and_shipped_characters(store, tmp_path):
    store.shipped_dir.mkdir()
    (store.shipped_dir / "Guide.yaml").write_text("name: Guide\ngreeting: Welcome\n")
    assert store.names() == ["Guide"] and store.load("Guide").shipped
    with pytest.raises(CharacterError, match="ships with Hearth"):
        store.delete("Guide")
    # A user's character of the same name hides the shipped one.
    store.save(Character(name="Guide", greeting="My own welcome"))
    assert store.load("Guide").greeting == "My own welcome" and not store.load("Guide").shipped
    store.delete("Guide")
    assert store.load("Guide").greeting == "Welcome"
    with pytest.raises(CharacterError, match="not a valid character name"):
        store.save(Character(name="../escape"))
    assert not (tmp_path / "escape.yaml").exists()
    with pytest.raises(CharacterError, match="no character named"):
        store.load("Nobody")


def test_a_damaged_character_file_is_one_line(store):
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "Broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(CharacterError, match="not valid YAML") as e:
        store.load("Broken")
    assert "\n" not in str(e.value)
    (store.user_dir / "Evil.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(CharacterError):
        store.load("Evil")  # safe_load: no Python objects from YAML


def test_the_shipped_example_character_loads_and_exports():
    shipped = CharacterStore(SHIPPED_CHARACTERS, SHIPPED_CHARACTERS / "no-user-dir")
    ember = shipped.load("Ember")
    assert ember.greeting and ember.context and ember.avatar_path is not None
    card = read_card_json(write_card(ember, ember.avatar_path.read_bytes()))
    assert card["data"]["name"] == "Ember"
    assert character_to_card(ember)["data"]["first_mes"] == ember.greeting


def test_placeholders_are_filled_in_persona_and_examples():
    c = Character(name="Ada", context="{{char}} greets {{USER}}.", example_dialogue="<START>\n<USER>: hi\n<BOT>: yo")
    assert c.persona("Sam") == "Ada greets Sam."
    assert c.examples("Sam") == "Sam: hi\nAda: yo"
