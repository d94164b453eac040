"""Character cards: a PNG (the avatar) whose `chara` tEXt chunk holds base64 JSON
per the chara_card_v2 spec (github.com/malfoyslastname/character-card-spec-v2), or whose
`ccv3` chunk holds a chara_card_v3 card (github.com/kwaipnai/character-card-spec-v3),
which wins when a PNG has both, as that spec asks. V3's `data` is V2's plus fields kept
as they are; its avatar is the `icon` asset named "main": `ccdefault:` (the PNG itself),
a `data:` URI, or `__asset:N` (the PNG's `chara-ext-asset_:N` chunk); any other (a URL)
is never fetched, and the card's own image is the avatar.

Uploads are untrusted: everything is checked before anything is written (size,
PNG signature and chunk CRCs, the chunk, base64, JSON, the spec, field types, and
the name, which becomes a file name). Pure Python (struct + zlib): no image library
is needed to read or write a card.
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from typing import Any

from webui.characters.character import Character, CharacterError, character_from_mapping

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CARD_BYTES = 20 << 20  # cards are avatars; 20 MiB is far above any real one
MAX_CARD_JSON_BYTES = 8 << 20
# Real cards nest ~6 deep (data > character_book > entries > [i] > extensions > ...) and
# hold a few thousand values with a large lorebook. Deeper or bigger JSON is refused:
# json.loads raises RecursionError near 1,000 levels, YAML's dumper sooner, and a few
# MiB of "[[[[" would otherwise reach both.
MAX_CARD_DEPTH = 32
MAX_CARD_VALUES = 1 << 20
# An avatar's pixels, checked in the PNG header before any decoder sees them: a PNG of
# a few KiB can claim 100,000 x 100,000 pixels and take 40 GB to decode.
MAX_AVATAR_SIDE = 4096
CARD_KEYWORD = b"chara"
V3_KEYWORD = b"ccv3"
ASSET_PREFIX = b"chara-ext-asset_:"
SPEC = "chara_card_v2"
SPEC_V3 = "chara_card_v3"
# V2 fields that map onto Character's own; the rest of `data` is kept as is.
_FIELD_MAP = {"description": "context", "personality": "personality", "scenario": "scenario",
              "first_mes": "greeting", "mes_example": "example_dialogue"}


class CardError(CharacterError):
    """An uploaded card is unusable; nothing was written (one line)."""


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) for every chunk, with bounds and CRCs checked."""
    if len(png) > MAX_CARD_BYTES:
        raise CardError(f"the file is {len(png) >> 20} MiB; a character card may be at most "
                        f"{MAX_CARD_BYTES >> 20} MiB")
    if not png.startswith(PNG_SIGNATURE):
        raise CardError("this is not a PNG file; a character card is a PNG image")
    out, pos = [], len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(png):
            raise CardError("the PNG file is truncated")
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        end = pos + 8 + length + 4
        if end > len(png):
            raise CardError("the PNG file is truncated or corrupt")
        data = png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[end - 4:end])
        if zlib.crc32(kind + data) != crc:
            raise CardError(f"the PNG file is corrupt (bad checksum in its {kind.decode('latin-1')!r} chunk)")
        out.append((kind, data))
        pos = end
        if kind == b"IEND":
            return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _text_chunks(png: bytes) -> dict[bytes, bytes]:
    """keyword -> text of each tEXt chunk (the first of each keyword)."""
    out: dict[bytes, bytes] = {}
    for kind, data in _chunks(png):
        if kind == b"tEXt":
            keyword, _, text = data.partition(b"\x00")
            out.setdefault(keyword, text)
    return out


def read_card_json(png: bytes) -> dict[str, Any]:
    """The card's JSON object, from the PNG's `ccv3` tEXt chunk, else its `chara` one."""
    texts = _text_chunks(png)
    payload = texts.get(V3_KEYWORD, texts.get(CARD_KEYWORD))
    if payload is None:
        raise CardError("this PNG holds no character card (no 'chara' or 'ccv3' text chunk)")
    if len(payload) > MAX_CARD_JSON_BYTES * 4 // 3 + 4:
        raise CardError("the card's data is too large")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise CardError("the card's 'chara' chunk is not valid base64") from None
    if len(raw) > MAX_CARD_JSON_BYTES:
        raise CardError("the card's data is too large")
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CardError(f"the card's JSON is broken: {e}") from None
    except RecursionError:
        raise CardError(f"the card's JSON is nested more than {MAX_CARD_DEPTH} levels deep") from None
    if not isinstance(card, dict):
        raise CardError("the card's JSON is not an object")
    problem = nesting_problem(card)
    if problem:
        raise CardError(f"the card's JSON {problem}")
    return card


def nesting_problem(value: Any) -> str | None:
    """Why parsed JSON or YAML is too deep or too big to keep, or None. Iterative, so
    its own depth is no limit; it counts every value it visits, so YAML aliases that
    repeat one list a billion times stop at the count too."""
    stack = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_CARD_VALUES:
            return f"holds more than {MAX_CARD_VALUES:,} values"
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_CARD_DEPTH:
            return f"is nested more than {MAX_CARD_DEPTH} levels deep"
        stack.extend((child, depth + 1) for child in children)
    return None


def avatar_problem(png: bytes) -> str | None:
    """Why an avatar image is refused, from its PNG header alone, or None."""
    # The signature, then IHDR: its length, type, width and height (24 bytes in all).
    if not png.startswith(PNG_SIGNATURE) or len(png) < 24 or png[12:16] != b"IHDR":
        return "the avatar is not a PNG image"
    width, height = struct.unpack(">II", png[16:24])
    if not (0 < width <= MAX_AVATAR_SIDE and 0 < height <= MAX_AVATAR_SIDE):
        return (f"the avatar is {width:,}x{height:,} pixels; at most {MAX_AVATAR_SIDE}x{MAX_AVATAR_SIDE} "
                "are allowed")
    return None


def card_to_character(card: dict[str, Any]) -> Character:
    """A V3 or V2 card (or an older V1 one, whose fields sit at the top level)."""
    if card.get("spec") in (SPEC, SPEC_V3):
        data = card.get("data")
        if not isinstance(data, dict):
            raise CardError(f"the card says {card['spec']} but has no data object")
        if card["spec"] == SPEC_V3:
            data = {"group_only_greetings": [], "assets": [], **data}  # marks it V3 for export
    elif "spec" in card:
        raise CardError(f"unsupported card spec {str(card['spec'])[:40]!r} (Hearth reads chara_card_v2 "
                        "and chara_card_v3)")
    else:
        data = card
    mapping: dict[str, Any] = {"name": data.get("name")}
    for src, dst in _FIELD_MAP.items():
        mapping[dst] = data.get(src, "")
    mapping["card"] = {k: v for k, v in data.items() if k != "name" and k not in _FIELD_MAP}
    try:
        return character_from_mapping(mapping)
    except CardError:
        raise
    except CharacterError as e:
        raise CardError(f"the card is unusable: {e}") from None


def character_to_card(character: Character) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": character.name,
        "description": character.context,
        "personality": character.personality,
        "scenario": character.scenario,
        "first_mes": character.greeting,
        "mes_example": character.example_dialogue,
        # Required by the spec; kept from an imported card when it had them.
        "creator_notes": "", "system_prompt": "", "post_history_instructions": "",
        "alternate_greetings": [], "tags": [], "creator": "", "character_version": "",
        "extensions": {},
    }
    data.update({k: v for k, v in character.card.items() if k != "name" and k not in _FIELD_MAP})
    return {"spec": SPEC, "spec_version": "2.0", "data": data}


def is_v3(character: Character) -> bool:
    """Imported from a V3 card (whose required V3 fields its card section keeps)."""
    return "group_only_greetings" in character.card


def strip_card(png: bytes) -> bytes:
    """The image alone: the PNG without its card chunks (the avatar to keep)."""
    chunks = _chunks(png)
    body = b"".join(_chunk(k, d) for k, d in chunks
                    if not (k == b"tEXt" and _is_card_keyword(d.partition(b"\x00")[0])))
    return PNG_SIGNATURE + body


def _is_card_keyword(keyword: bytes) -> bool:
    return keyword in (CARD_KEYWORD, V3_KEYWORD) or keyword.startswith(ASSET_PREFIX)


def card_avatar(png: bytes, card: dict[str, Any]) -> bytes:
    """The avatar of a card: V3's main icon asset when the card holds its image, else the
    card's own picture. Bare PNG bytes, not yet checked (avatar_problem)."""
    data = card.get("data") if card.get("spec") == SPEC_V3 else None
    assets = data.get("assets") if isinstance(data, dict) else None
    icons = [a for a in assets if isinstance(a, dict) and a.get("type") == "icon"] \
        if isinstance(assets, list) else []
    icon = next((a for a in icons if a.get("name") == "main"), icons[0] if icons else None)
    uri = icon.get("uri") if icon is not None else None
    raw = None
    if isinstance(uri, str) and uri.startswith("data:") and ";base64," in uri[:100]:
        raw = uri.partition(";base64,")[2]
    elif isinstance(uri, str) and uri.startswith("__asset:"):
        raw = _text_chunks(png).get(ASSET_PREFIX + uri[len("__asset:"):].encode("utf-8", "replace"))
    if raw is None:
        return strip_card(png)
    try:
        image = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise CardError("the card's avatar asset is not valid base64") from None
    if not image.startswith(PNG_SIGNATURE):
        raise CardError("the card's avatar asset is not a PNG image")
    return strip_card(image)


def write_card(character: Character, avatar_png: bytes | None = None) -> bytes:
    """A PNG card: the avatar (or a plain square) with the card in a `chara` chunk, and
    for a character from a V3 card in a `ccv3` chunk too (V2 readers read the first)."""
    image = strip_card(avatar_png) if avatar_png else placeholder_png()
    card = character_to_card(character)
    cards = [(CARD_KEYWORD, card)]
    if is_v3(character):
        cards.append((V3_KEYWORD, {"spec": SPEC_V3, "spec_version": "3.0", "data": card["data"]}))
    chunk = b"".join(_chunk(b"tEXt", keyword + b"\x00" + base64.b64encode(
        json.dumps(value, ensure_ascii=False).encode("utf-8"))) for keyword, value in cards)
    # Right after IHDR, which the PNG format requires to come first.
    ihdr_end = len(PNG_SIGNATURE) + 8 + struct.unpack(">I", image[8:12])[0] + 4
    return image[:ihdr_end] + chunk + image[ihdr_end:]


def import_card(png: bytes) -> tuple[Character, bytes]:
    """Check an uploaded card completely; the character and its bare avatar PNG."""
    card = read_card_json(png)
    character = card_to_character(card)
    avatar = card_avatar(png, card)
    problem = avatar_problem(avatar)
    if problem:
        raise CardError(problem)
    return character, avatar


def placeholder_png(size: int = 64, rgb: tuple[int, int, int] = (200, 120, 60)) -> bytes:
    """A plain square PNG, for exporting a character that has no avatar."""
    row = b"\x00" + bytes(rgb) * size
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * size))
            + _chunk(b"IEND", b""))
