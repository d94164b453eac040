"""Characters: who the model plays in the chat modes.

A character is a YAML file (`<name>.yaml`, with an optional `<name>.png` avatar
beside it). Hearth's own examples are in the repository's `characters/`; the ones a
user creates or imports go to the user data folder, and a user's character hides a
shipped one of the same name. Fields follow text-generation-webui's files, plus what
a V2 character card carries, so a card survives an import/export round trip.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from webui.errors import ErrorKind, UserError
from webui.userdata.folders import InvalidName, check_name

MAX_CHARACTER_FILE_BYTES = 8 << 20
TEXT_FIELDS = ("greeting", "context", "personality", "scenario", "example_dialogue")
DEFAULT_USER_NAME = "You"


class CharacterError(UserError, ValueError):
    """A character cannot be read, saved or found (one line)."""

    kind = ErrorKind.INVALID


@dataclass
class Character:
    name: str
    greeting: str = ""  # the character's first message in a new chat
    context: str = ""  # the persona: who the character is (a card's description)
    personality: str = ""
    scenario: str = ""
    example_dialogue: str = ""  # lines like "{{user}}: hi\n{{char}}: hello"
    # Everything else a V2 card held (creator, tags, alternate greetings, ...), kept
    # so that exporting gives back the card that was imported.
    card: dict[str, Any] = field(default_factory=dict)
    shipped: bool = field(default=False, compare=False)  # from Hearth's characters/
    avatar_path: Path | None = field(default=None, compare=False)

    def fill(self, text: str, user_name: str = DEFAULT_USER_NAME) -> str:
        """Cards write the names as {{char}} and {{user}} (older ones <BOT>, <USER>)."""
        text = _CHAR_TAG.sub(lambda _: self.name, text)
        return _USER_TAG.sub(lambda _: user_name, text)

    def persona(self, user_name: str = DEFAULT_USER_NAME) -> str:
        """The fixed text that tells the model who it plays."""
        parts = [self.context.strip()]
        if self.personality.strip():
            parts.append(f"{self.name}'s personality: {self.personality.strip()}")
        if self.scenario.strip():
            parts.append(f"Scenario: {self.scenario.strip()}")
        return self.fill("\n\n".join(p for p in parts if p), user_name)

    def examples(self, user_name: str = DEFAULT_USER_NAME) -> str:
        """Example dialogue without the <START> separators cards use."""
        lines = [ln for ln in self.example_dialogue.splitlines() if ln.strip().upper() != "<START>"]
        return self.fill("\n".join(lines).strip(), user_name)

    def to_yaml_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("shipped", "avatar_path")}
        return {k: v for k, v in data.items() if v not in ("", {}, None) or k == "name"}


_CHAR_TAG = re.compile(r"\{\{char\}\}|<BOT>", re.IGNORECASE)
_USER_TAG = re.compile(r"\{\{user\}\}|<USER>", re.IGNORECASE)


def character_from_mapping(data: Any) -> Character:
    if not isinstance(data, dict):
        raise CharacterError("a character file must be a mapping of fields")
    name = data.get("name")
    if not isinstance(name, str):
        raise CharacterError("the character has no name")
    try:
        name = check_name(name, "character name")
    except InvalidName as e:
        raise CharacterError(str(e)) from None
    values = {}
    for key in TEXT_FIELDS:
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, (str, int, float)):
            raise CharacterError(f"the character's {key} must be text")
        values[key] = str(value)
    card = data.get("card") or {}
    if not isinstance(card, dict):
        raise CharacterError("the character's card section must be a mapping")
    return Character(name=name, card=card, **values)
