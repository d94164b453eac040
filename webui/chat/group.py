"""Group chats: several characters in one chat, taking turns.

A group is saved in its chat file (`group`: the members in speaking order and the
turn rule) and every reply records who spoke (the message's `name`). Who speaks
next follows SillyTavern's activation strategies:

- `round-robin` (its "list order"): the member after the one who spoke last.
- `mentioned` (its "natural order"): the member named in the last message (the
  earliest name in it; a member does not answer itself), else round-robin.
- `manual`: the member the user chose; there is no default.

A member the user chose always speaks next, whatever the rule.

The prompt for a reply by X (prompts.py asks a `GroupTurn`): X's persona and
example dialogue, one line about each other member, the history with every speaker's
name, and stop strings at the other members' name prefixes ("\\nBob:") so X does not
write their lines. In chat-instruct the template sees X's own replies as its
(assistant) turns and everyone else's, named, as the user's, merged where two come in
a row so templates that insist on alternating roles still render. Instruct mode has
no characters, so a group cannot reply there.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loaders.fields import SettingError, build, setting
from webui.characters.character import Character, CharacterError
from webui.characters.store import CharacterStore
from webui.errors import ErrorKind, UserError

log = logging.getLogger(__name__)

TURN_RULES = ("round-robin", "mentioned", "manual")
MAX_MEMBERS = 8  # each member's description is in every prompt
DESCRIPTION_CHARS = 200  # an other member's line in the prompt: its first sentence, at most this
CHAT_MODES = ("chat", "chat-instruct")

Message = dict[str, Any]


class GroupError(UserError, ValueError):
    """A group cannot be made or cannot take its turn (one line)."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class Group:
    members: tuple[str, ...] = setting((), "The characters in this chat, in their speaking order.")
    turns: str = setting("round-robin", "Who speaks next: round-robin (each member in turn), mentioned "
                         "(the member named in the last message, else the next in turn), manual (the member "
                         "you choose).", choices=TURN_RULES)


def make_group(members: Sequence[str], turns: str = "round-robin") -> Group:
    """A valid group from what a user picked: 2 to MAX_MEMBERS different characters."""
    names = tuple(dict.fromkeys(m.strip() for m in members or () if m and m.strip()))
    if len(names) < 2:
        raise GroupError("a group chat needs at least two different characters")
    if len(names) > MAX_MEMBERS:
        raise GroupError(f"a group chat takes at most {MAX_MEMBERS} characters (got {len(names)})")
    try:
        return build(Group, members=names, turns=turns)
    except SettingError as e:
        raise GroupError(str(e)) from None


def group_from_json(data: Any) -> Group | None:
    """The `group` key of a chat file; None for a chat with one character (or a
    damaged key, logged: the chat still opens, as a plain chat)."""
    if data is None:
        return None
    try:
        if not isinstance(data, dict) or not isinstance(data.get("members"), list) \
                or not all(isinstance(m, str) for m in data["members"]):
            raise GroupError("members is not a list of names")
        return make_group(data["members"], data.get("turns", "round-robin"))
    except GroupError as e:
        log.warning("ignoring a damaged group in a chat file: %s", e)
        return None


def mentioned(members: Sequence[str], message: Message | None) -> str | None:
    """The member named first in `message` (whole words, any case), not counting
    the member who wrote it."""
    if not message:
        return None
    author = message.get("name") if message.get("role") == "assistant" else None
    text = message.get("content") or ""
    found = []
    for name in members:
        if name == author:
            continue
        hit = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
        if hit:
            found.append((hit.start(), name))
    return min(found)[1] if found else None


def after_last(members: Sequence[str], messages: Sequence[Message]) -> str:
    """Round-robin: the member after the last one who spoke; the first if none has."""
    for m in reversed(messages):
        if m.get("role") == "assistant" and m.get("name") in members:
            return members[(members.index(m["name"]) + 1) % len(members)]
    return members[0]


def next_speaker(group: Group, messages: Sequence[Message], chosen: str = "") -> str:
    """Who replies next under the group's rule; `chosen`, a member the user picked, wins."""
    if chosen:
        if chosen not in group.members:
            raise GroupError(f"{chosen} is not in this group ({', '.join(group.members)})")
        return chosen
    if group.turns == "manual":
        raise GroupError("this group takes turns by your choice: pick who speaks next")
    if group.turns == "mentioned":
        named = mentioned(group.members, messages[-1] if messages else None)
        if named:
            return named
    return after_last(group.members, messages)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = re.search(r"(?<=[.!?])\s", text)
    text = text[:cut.start()] if cut else text
    return text if len(text) <= DESCRIPTION_CHARS else text[:DESCRIPTION_CHARS - 1] + "…"


@dataclass(frozen=True)
class GroupTurn:
    """One reply in a group chat: who speaks, and who else is there."""
    speaker: Character
    others: tuple[Character, ...]

    def describe(self, other: Character, user_name: str) -> str:
        return _first_sentence(other.fill(other.context or other.personality, user_name)) or other.name

    def system_text(self, user_name: str, system_prompt: str = "", instruct: bool = True) -> str:
        """The fixed text before the history: the speaker's persona and examples, the
        others in a line each, and (in chat-instruct) whose reply to write."""
        me = self.speaker
        others = "\n".join(f"- {o.name}: {self.describe(o, user_name)}" for o in self.others)
        parts = [system_prompt.strip(), me.persona(user_name)]
        examples = me.examples(user_name)
        if examples:
            parts.append(f"Example dialogue:\n{examples}" if instruct else examples)
        parts.append(f"Also in this chat with {user_name}:\n{others}")
        if instruct:
            parts.append(f"You are {me.name}. Stay in character and write only {me.name}'s next reply "
                         f"in this group chat, never the lines of {user_name} or the others.")
        return "\n\n".join(p for p in parts if p)

    def stop_strings(self, user_name: str) -> tuple[str, ...]:
        """The user's and the other members' name prefixes: the named history invites
        the model to go on with their lines, in chat-instruct too."""
        return (f"\n{user_name}:", *(f"\n{o.name}:" for o in self.others))

    def template_messages(self, messages: Sequence[Message], user_name: str) -> list[Message]:
        """chat-instruct's history for the template: the speaker's own replies as its
        turns, everyone else's named, as the user's; two in a row merged."""
        out: list[Message] = []
        for m in messages:
            role, content = m["role"], m["content"]
            if role == "user":
                content = f"{user_name}: {content}"
            elif role == "assistant" and m.get("name", self.speaker.name) != self.speaker.name:
                role, content = "user", f"{m['name']}: {content}"
            if out and out[-1]["role"] == role and role != "system":
                out[-1] = {"role": role, "content": f"{out[-1]['content']}\n\n{content}"}
            else:
                out.append({"role": role, "content": content})
        return out


def plan_turn(characters: CharacterStore, group: Group, messages: Sequence[Message], mode: str,
              chosen: str = "", continue_last: bool = False) -> GroupTurn:
    """The next reply of a group chat: its speaker (the last reply's own when continuing
    it) with every member's character read from the store."""
    if mode not in CHAT_MODES:
        raise GroupError(f"group chats need the chat or chat-instruct mode ({mode} mode has no characters)")
    if continue_last and messages and messages[-1].get("name") in group.members:
        name = messages[-1]["name"]
    else:
        name = next_speaker(group, messages, chosen)
    members = {n: load_member(characters, n) for n in group.members}
    return GroupTurn(members[name], tuple(c for n, c in members.items() if n != name))


def load_member(characters: CharacterStore, name: str) -> Character:
    try:
        return characters.load(name)
    except CharacterError as e:
        raise GroupError(f"group member {name}: {e}") from None


def carried_group(group: Group | None, mode: str, character: str) -> Group | None:
    """The group a new chat keeps: New chat in a group chat, still with its first
    member (whose chats it is kept with) in a chat mode, starts the same group."""
    if group is not None and mode in CHAT_MODES and character == group.members[0]:
        return group
    return None


def open_group(history: Any, group: Group) -> None:
    """Make a fresh chat (a ChatHistory) a group chat: its greeting is the first member's."""
    history.group = group
    if history.messages and history.messages[0]["role"] == "assistant":
        history.messages[0]["name"] = group.members[0]


def check_members(characters: CharacterStore, group: Group, mode: str) -> None:
    """Refuse a group whose members cannot all be read, or a mode that has no characters."""
    if mode not in CHAT_MODES:
        raise GroupError(f"group chats need the chat or chat-instruct mode ({mode} mode has no characters)")
    for name in group.members:
        load_member(characters, name)


def strip_own_name(text: str, name: str | None) -> str:
    """A reply that begins with its speaker's "Name:", as the named history invites."""
    if name and text.startswith(f"{name}:"):
        return text[len(name) + 1:].lstrip()
    return text


def speaker_label(message: Message) -> str:
    """How a group reply's bubble names its speaker."""
    name = message.get("name")
    return f"**{name}:** " if name else ""


def unlabel(text: str, messages: Sequence[Message], index: int) -> str:
    """An edited bubble's text (message `index`) without the speaker's label it showed."""
    label = speaker_label(messages[index]) if 0 <= index < len(messages) else ""
    return text[len(label):] if label and text.startswith(label) else text
