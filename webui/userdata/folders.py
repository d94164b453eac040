"""Where Hearth keeps what the user makes: chat histories, settings, their own
characters and presets. One folder, plain files; `user_data/` by default (git-ignored),
or the folder the app names (--user-data, $HEARTH_USER_DATA; the tests use a temp folder).

What ships with Hearth (the example character, the built-in presets) lives in the
top-level `characters/` and `presets/` (see SHIPPED_ROOT) and is never written to."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from loaders.errors import ErrorKind, UserError

# What ships with Hearth: the repository's top-level characters/, presets/ and
# extensions/ in a checkout (and an editable install); in an installed wheel, the same
# folders inside the package, where setup.py maps them, since a wheel holds only packages.
_PACKAGED = Path(__file__).resolve().parent.parent / "shipped"
SHIPPED_ROOT = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent.parent
SHIPPED_CHARACTERS = SHIPPED_ROOT / "characters"
SHIPPED_PRESETS = SHIPPED_ROOT / "presets"
SHIPPED_TOOLS = SHIPPED_ROOT / "tools"  # the safe tools a chat can switch on (calculator, date_time)

MAX_NAME_LENGTH = 64
# Characters that are unsafe in a file name on some system we support.
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')


class InvalidName(UserError, ValueError):
    """A user-supplied name cannot be used as a file name (one line)."""

    kind = ErrorKind.INVALID


def check_name(name: str, what: str = "name") -> str:
    """A character, preset or chat name becomes a file name: refuse anything that
    could leave its folder (`../x`, `/etc/passwd`) or that some filesystem rejects."""
    if not isinstance(name, str):
        raise InvalidName(f"the {what} must be text")
    stripped = name.strip()
    if not stripped:
        raise InvalidName(f"the {what} is empty")
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidName(f"the {what} is longer than {MAX_NAME_LENGTH} characters")
    if _FORBIDDEN.search(stripped) or stripped.startswith(".") or stripped.endswith("."):
        raise InvalidName(f"{stripped[:40]!r} is not a valid {what}: no slashes, control "
                         'characters, <>:"|?*, or leading/trailing dots')
    return stripped


@dataclass(frozen=True)
class UserData:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> UserData:
        """The folder is chosen by the app (webui.config) and passed in; read nowhere else."""
        return cls(Path(root).expanduser())

    @property
    def histories(self) -> Path:
        return self.root / "histories"

    @property
    def characters(self) -> Path:
        return self.root / "characters"

    @property
    def presets(self) -> Path:
        return self.root / "presets"

    @property
    def lorebooks(self) -> Path:
        return self.root / "lorebooks"  # standalone lorebooks (world info), one JSON file each

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.yaml"

    @property
    def tools(self) -> Path:
        return self.root / "tools"  # the user's Python tools, one function per file

    @property
    def mcp_file(self) -> Path:
        return self.root / "mcp.json"  # the MCP servers whose tools a chat can use

    @property
    def users_file(self) -> Path:
        return self.root / "users.json"  # the accounts (webui/accounts/users.py), when there are any

    @property
    def extension_data(self) -> Path:
        return self.root / "extension_data"  # each extension's own folder of this user's data

    def for_user(self, name: str) -> UserData:
        """One user's own folder, `users/NAME/`, when Hearth has accounts. The name is
        checked here too, so no name (`../x`) can reach outside `users/`."""
        return UserData(self.root / "users" / check_name(name, "user name"))


class ShippedAndUserFiles:
    """A folder of YAML files that ship with Hearth, overlaid by the user's own folder
    of the same kind: the user's file wins over a shipped one of the same name, and
    only the user's folder is ever written. Characters and presets both work so."""

    def __init__(self, shipped_dir: Path, user_dir: Path):
        self.shipped_dir = Path(shipped_dir)
        self.user_dir = Path(user_dir)
        self._lock = threading.Lock()  # held while writing into user_dir

    def _files(self) -> dict[str, tuple[Path, bool]]:
        """name -> (file, shipped)."""
        found: dict[str, tuple[Path, bool]] = {}
        for folder, shipped in ((self.shipped_dir, True), (self.user_dir, False)):
            if folder.is_dir():
                for path in sorted(folder.glob("*.yaml")):
                    found[path.stem] = (path, shipped)
        return found

    def names(self) -> list[str]:
        return sorted(self._files(), key=str.casefold)
