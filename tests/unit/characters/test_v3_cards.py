"""V3 character cards (chara_card_v3 in a `ccv3` tEXt chunk): read, preferred over a
`chara` chunk, their avatar asset (ccdefault:, a data: URI, a PNG-embedded asset; a
URL is never fetched), written back as V3 with V2 beside it, and a card's lorebook
checked at import."""
from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from tests.unit.characters.test_character_cards import SPEC_CARD, card_png
from webui.characters.cards import CardError, import_card, placeholder_png, read_card_json, strip_card, write_card
from webui.characters.lorebook import character_lorebook
from webui.characters.store import CharacterStore

RED, BLUE = placeholder_png(8, (255, 0, 0)), placeholder_png(8, (0, 0, 255))


def v3(assets=None, **extra) -> dict:
    data = {**SPEC_CARD["data"], "name": "Ada Three", "nickname": "Ada", "group_only_greetings": [],
            "creation_date": 1700000000, "assets": assets if assets is not None else
            [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}], **extra}
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def with_chunk(png: bytes, keyword: bytes, payload: bytes) -> bytes:
    data = keyword + b"\x00" + payload
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:33] + chunk + png[33:]


def b64json(card: dict) -> bytes:
    return base64.b64encode(json.dumps(card).encode())


def test_a_v3_card_is_read_and_wins_over_its_v2_chunk():
    png = with_chunk(card_png(b64json(SPEC_CARD)), b"ccv3", b64json(v3()))
    assert read_card_json(png)["spec"] == "chara_card_v3"
    character, avatar = import_card(png)
    assert character.name == "Ada Three" and character.card["nickname"] == "Ada"
    assert character.greeting == SPEC_CARD["data"]["first_mes"]
    assert avatar == strip_card(png)  # ccdefault: the card's own picture
    assert character_lorebook(character.card, character.name).entries[0].keys == ("Skylark",)


def test_the_avatar_asset_data_uri_and_embedded_chunk():
    uri = "data:image/png;base64," + base64.b64encode(BLUE).decode()
    _, avatar = import_card(card_png(b64json(v3([{"type": "icon", "uri": uri, "name": "main", "ext": "png"}])),
                                     b"ccv3"))
    assert avatar == strip_card(BLUE)
    embedded = v3([{"type": "icon", "uri": "__asset:0", "name": "main", "ext": "png"}])
    png = with_chunk(card_png(b64json(embedded), b"ccv3"), b"chara-ext-asset_:0", base64.b64encode(RED))
    _, avatar = import_card(png)
    assert avatar == strip_card(RED) and b"chara-ext-asset_" not in avatar
    url = v3([{"type": "icon", "uri": "https://example.com/a.png", "name": "main", "ext": "png"}])
    png = card_png(b64json(url), b"ccv3")
    assert import_card(png)[1] == strip_card(png)  # never fetched


@pytest.mark.parametrize("uri, says", [
    ("data:image/png;base64,@@@", "not valid base64"),
    ("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode(), "not a PNG image"),
])
def test_a_bad_avatar_asset_is_one_line(uri, says):
    with pytest.raises(CardError, match=says):
        import_card(card_png(b64json(v3([{"type": "icon", "uri": uri, "name": "main"}])), b"ccv3"))


def test_a_v3_character_exports_as_v3_with_v2_beside(tmp_path):
    store = CharacterStore(tmp_path / "shipped", tmp_path / "user")
    saved = store.import_card(card_png(b64json(v3()), b"ccv3"))
    exported = write_card(saved, strip_card(RED))
    card = read_card_json(exported)
    assert card["spec"] == "chara_card_v3" and card["data"]["nickname"] == "Ada"
    assert card["data"]["assets"][0]["uri"] == "ccdefault:"
    assert b"chara\x00" in exported  # a V2 reader still finds its chunk


def test_a_card_with_a_broken_lorebook_is_refused(tmp_path):
    store = CharacterStore(tmp_path / "shipped", tmp_path / "user")
    bad = v3(character_book={"entries": [{"keys": ["a"], "content": ["not", "text"]}]})
    with pytest.raises(CardError, match="lorebook is unusable"):
        store.import_card(card_png(b64json(bad), b"ccv3"))
    assert store.names() == []
