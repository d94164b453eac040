"""Where characters live: Hearth's shipped examples in the repository's `characters/`,
and the ones a user creates or imports in the user data folder (a user's character
hides a shipped one of the same name)."""
from __future__ import annotations

import logging

from webui.characters.cards import CardError, avatar_problem, import_card, nesting_problem
from webui.characters.character import MAX_CHARACTER_FILE_BYTES, Character, CharacterError, character_from_mapping
from webui.characters.lorebook import LorebookError, character_lorebook
from webui.userdata.atomic import write_bytes_atomic, write_text_atomic
from webui.userdata.folders import InvalidName, ShippedAndUserFiles, check_name

log = logging.getLogger(__name__)


class CharacterStore(ShippedAndUserFiles):
    """Characters: shipped YAML files in characters/, and the user's own."""

    def exists(self, name: str) -> bool:
        return name in self._files()

    def load(self, name: str) -> Character:
        import yaml

        entry = self._files().get(name)
        if entry is None:
            raise CharacterError(f"no character named {name!r}")
        path, shipped = entry
        if path.stat().st_size > MAX_CHARACTER_FILE_BYTES:
            raise CharacterError(f"{path.name} is too large to be a character file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise CharacterError(f"{path.name} is not valid YAML: {str(e).splitlines()[0]}") from None
        except RecursionError:  # YAML's composer recurses once per level of nesting
            raise CharacterError(f"{path.name} is nested too deeply to be a character file") from None
        problem = nesting_problem(data)
        if problem:
            raise CharacterError(f"{path.name} {problem}")
        if isinstance(data, dict) and not data.get("name"):
            data = {**data, "name": name}
        character = character_from_mapping(data)
        character.name = name  # the file name is the identity, whatever the file says
        character.shipped = shipped
        avatar = path.with_suffix(".png")
        character.avatar_path = avatar if avatar.is_file() else None
        return character

    def save(self, character: Character, avatar_png: bytes | None = None) -> Character:
        """Write the character (and its avatar) to the user's folder."""
        import yaml

        try:
            name = check_name(character.name, "character name")
        except InvalidName as e:
            raise CharacterError(str(e)) from None
        character.name = name
        text = yaml.safe_dump(character.to_yaml_dict(), allow_unicode=True, sort_keys=False,
                              width=100)
        target = self.user_dir / f"{name}.yaml"
        with self._lock:
            if avatar_png is None and character.avatar_path and character.avatar_path.is_file() \
                    and character.avatar_path != target.with_suffix(".png"):
                avatar_png = character.avatar_path.read_bytes()  # a shipped avatar, or a rename
            if avatar_png is not None:
                problem = avatar_problem(avatar_png)
                if problem:
                    raise CharacterError(problem)
                write_bytes_atomic(target.with_suffix(".png"), avatar_png)
            write_text_atomic(target, text)
        log.info("saved character %s", name)
        return self.load(name)

    def delete(self, name: str) -> None:
        entry = self._files().get(name)
        if entry is None:
            raise CharacterError(f"no character named {name!r}")
        path, shipped = entry
        if shipped:
            raise CharacterError(f"{name} ships with Hearth and cannot be deleted")
        with self._lock:
            path.unlink(missing_ok=True)
            path.with_suffix(".png").unlink(missing_ok=True)

    def import_card(self, png: bytes) -> Character:
        """Import a V2 or V3 character card. Everything is checked before anything is
        written (its lorebook too); a name that is taken gets a " (2)" suffix rather than replacing."""
        character, avatar = import_card(png)
        try:
            character_lorebook(character.card, character.name)
        except LorebookError as e:
            raise CardError(f"the card's lorebook is unusable: {e}") from None
        character.name = self.free_name(character.name)
        return self.save(character, avatar)

    def free_name(self, name: str) -> str:
        """`name`, or `name (2)`, `name (3)`... whichever is not taken yet."""
        taken = set(self._files())
        if name not in taken:
            return name
        for i in range(2, 1000):
            candidate = f"{name[:MAX_NAME_SUFFIX_ROOM]} ({i})"
            if candidate not in taken:
                return candidate
        raise CharacterError(f"too many characters named {name!r}")


MAX_NAME_SUFFIX_ROOM = 58  # leaves room for " (999)" within the 64-character limit
