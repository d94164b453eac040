"""Character cards and files against crafted input: JSON or YAML nested too deeply or
holding too much is one CardError/CharacterError line, never RecursionError; an
avatar whose PNG header claims too many pixels is refused before any decoder sees it,
on import and on save, and a stored avatar is shown without being decoded."""
from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from tests.unit.characters.test_character_cards import SPEC_CARD, card_png, spec_card_png
from webui.characters.cards import (
    MAX_AVATAR_SIDE,
    MAX_CARD_DEPTH,
    PNG_SIGNATURE,
    CardError,
    import_card,
    placeholder_png,
    read_card_json,
    write_card,
)
from webui.characters.character import Character, CharacterError
from webui.characters.store import CharacterStore


@pytest.fixture
def store(tmp_path):
    return CharacterStore(tmp_path / "shipped", tmp_path / "user")


def nested(depth: int) -> dict:
    """A V2 card whose extensions hold lists `depth` deep: 3 + depth levels in all."""
    inner: list = []
    for _ in range(depth - 1):
        inner = [inner]
    return {"spec": "chara_card_v2", "data": {"name": "Deep", "extensions": {"x": inner}}}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def claimed_png(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + _chunk(b"IEND", b""))


def with_card(image: bytes, card: dict = SPEC_CARD) -> bytes:
    chunk = _chunk(b"tEXt", b"chara\x00" + base64.b64encode(json.dumps(card).encode()))
    return image[:33] + chunk + image[33:]


def test_json_nested_100k_deep_is_one_line_and_writes_nothing(store):
    payload = base64.b64encode(b'{"spec": "chara_card_v2", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(CardError, match=f"nested more than {MAX_CARD_DEPTH} levels") as e:
        store.import_card(card_png(payload))
    assert "\n" not in str(e.value)
    assert not store.user_dir.exists() or not any(store.user_dir.iterdir())


def test_json_just_too_deep_for_later_steps_is_refused_and_the_limit_passes(store):
    with pytest.raises(CardError, match="nested more than"):
        read_card_json(spec_card_png(nested(MAX_CARD_DEPTH - 2)))  # 33 levels in all
    deepest = nested(MAX_CARD_DEPTH - 3)
    character, _ = import_card(spec_card_png(deepest))
    saved = store.save(character)  # YAML and JSON of the deepest allowed card both work
    assert read_card_json(write_card(saved))["data"]["extensions"] == deepest["data"]["extensions"]


def test_a_card_with_too_many_values_is_refused():
    card = {"spec": "chara_card_v2", "data": {"name": "Wide", "tags": [0] * 1_100_000}}
    with pytest.raises(CardError, match="more than 1,048,576 values"):
        read_card_json(spec_card_png(card))


def test_an_avatar_claiming_too_many_pixels_is_refused_on_import(store):
    bomb = with_card(claimed_png(100_000, 100_000))
    with pytest.raises(CardError, match="100,000x100,000 pixels") as e:
        store.import_card(bomb)
    assert "\n" not in str(e.value)
    assert not store.user_dir.exists() or not any(store.user_dir.iterdir())
    character, avatar = import_card(with_card(claimed_png(MAX_AVATAR_SIDE, MAX_AVATAR_SIDE)))
    assert character.name == "Captain Ada" and avatar.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("avatar, match", [
    (claimed_png(MAX_AVATAR_SIDE + 1, 1), "4,097x1 pixels"),
    (claimed_png(0, 10), "0x10 pixels"),
    (b"GIF89a" + b"\0" * 40, "not a PNG"),
])
def test_saving_a_bad_avatar_is_refused_and_writes_nothing(store, avatar, match):
    with pytest.raises(CharacterError, match=match):
        store.save(Character(name="Pic"), avatar)
    assert not store.exists("Pic")


def test_a_character_file_nested_too_deeply_is_one_line(store):
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "Deep.yaml").write_text("name: Deep\ncard: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(CharacterError, match="nested too deeply") as e:
        store.load("Deep")
    assert "\n" not in str(e.value)
    (store.user_dir / "Deeper.yaml").write_text("name: Deeper\ncard: {x: " + "[" * 40 + "]" * 40 + "}\n")
    with pytest.raises(CharacterError, match="nested more than"):
        store.load("Deeper")


def test_a_yaml_alias_bomb_stops_at_the_value_count(store):
    # Nine levels of ten aliases each: a billion values once expanded, a few lines on disk.
    lines = ["name: Bomb", "card:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "Bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(CharacterError, match="more than 1,048,576 values"):
        store.load("Bomb")


def test_a_stored_avatar_is_shown_without_decoding(store, monkeypatch):
    from PIL import Image

    from webui.ui.avatars import avatar_file

    saved = store.save(Character(name="Pic"), placeholder_png(16))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the avatar was decoded to be shown")

    monkeypatch.setattr(Image, "open", no_decoding)
    shown = avatar_file(saved)
    assert open(shown, "rb").read() == saved.avatar_path.read_bytes()
    assert avatar_file(saved) == shown  # copied once, served again

    # An oversized avatar written before the check existed: not shown, never decoded.
    saved.avatar_path.write_bytes(claimed_png(100_000, 100_000))
    assert avatar_file(saved) is None
