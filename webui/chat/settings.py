"""The chat settings a user expects to find again next time: mode, instruction
template, preset, last character. Declared once here; the UI reads them and the CLI
flags (--mode, --character, ...) are generated from this dataclass.

Stored as YAML in the user data folder, rewritten atomically on every change. A
damaged file or a stale value (a deleted preset, say) falls back to the default for
that one setting, with a log line: settings never stop Hearth from starting.

The file is shared by every browser that opens this Hearth, so a custom instruction
template typed in the chat tab stays that browser tab's own (a Jinja template is a
program, and one person's must not become everyone's by being typed): it is stored
here only when the user presses the tab's Save button. The API never reads it: an
API chat always uses the model's own template.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders.fields import SettingError, build, describe, setting, to_dict
from webui.chat.prompts import MODES
from webui.chat.templates import CUSTOM_TEMPLATE, MODEL_TEMPLATE, template_choices
from webui.userdata.atomic import write_text_atomic

log = logging.getLogger(__name__)

DEFAULT_CHARACTER = "Ember"
SETTINGS_GROUP = "chat (remembered in the user data folder)"  # their section in `hearth --help`


@dataclass(frozen=True)
class ChatSettings:
    mode: str = setting("instruct", "Chat mode: chat (a character talks with you), chat-instruct "
                        "(the character inside the model's instruction template), instruct (a plain assistant).",
                        choices=MODES, group=SETTINGS_GROUP)
    character: str = setting(DEFAULT_CHARACTER, "The character to chat with (a name in characters/).",
                             group=SETTINGS_GROUP)
    template: str = setting(MODEL_TEMPLATE, "Instruction template for the instruct modes.",
                            choices=tuple(template_choices()), group=SETTINGS_GROUP)
    preset: str = setting("", "Parameters preset (a name in presets/; empty = Hearth's defaults).",
                          group=SETTINGS_GROUP)
    user_name: str = setting("You", "Your name in the chat modes.", group=SETTINGS_GROUP)
    custom_template: str = setting("", "The instruction template used when template is Custom (Jinja); "
                                   "stored only by the chat tab's Save button.", advanced=True)
    # The chat's attachments (webui/chat/attachments.py): each limit is checked when a
    # file is attached and again when the message is sent, each refusal one line.
    attachment_max_mb: float = setting(10.0, "Largest file you can attach to one chat message, in MiB "
                                       "(a PDF's text is usually far smaller than the file).", minimum=0,
                                       exclusive_minimum=True, metavar="MB", group=SETTINGS_GROUP)
    attachments_max_chars: int = setting(100_000, "Most text, in characters, that the attachments of one "
                                         "chat message may add to the prompt (about 4 characters a token).",
                                         minimum=1, metavar="CHARS", group=SETTINGS_GROUP)
    paste_attachment_chars: int = setting(2000, "A paste into the chat box longer than this many characters "
                                          "becomes an attachment (pasted.txt); 0 keeps every paste in the box.",
                                          minimum=0, metavar="CHARS", group=SETTINGS_GROUP)


class SettingsStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> ChatSettings:
        import yaml

        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            return ChatSettings()
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
            log.warning("ignoring damaged settings file %s: %s", self.path, e)
            return ChatSettings()
        if not isinstance(data, dict):
            return ChatSettings()
        good: dict[str, Any] = {}
        known = {s.name for s in describe(ChatSettings)}
        for key, value in data.items():
            if key not in known:
                continue
            try:
                build(ChatSettings, {key: value})
            except SettingError as e:
                log.warning("settings: ignoring %s", e)
                continue
            good[key] = value
        settings = build(ChatSettings, good)
        if settings.template == CUSTOM_TEMPLATE and not settings.custom_template.strip():
            # Custom chosen but no template saved with it: every chat would be refused.
            return dataclasses.replace(settings, template=MODEL_TEMPLATE)
        return settings

    def update(self, **changes: Any) -> ChatSettings:
        """Change some settings and save; an invalid value raises SettingError."""
        import yaml

        with self._lock:
            new = build(ChatSettings, {**to_dict(self.load()), **changes})
            write_text_atomic(self.path, yaml.safe_dump(to_dict(new), sort_keys=False,
                                                        allow_unicode=True))
            return new


def chat_flags(args: Any) -> dict[str, Any]:
    """The --mode/--character/... values given on the command line (dest chat_<name>)."""
    out = {}
    for f in dataclasses.fields(ChatSettings):
        value = getattr(args, f"chat_{f.name}", None)
        if value is not None:
            out[f.name] = value
    return out
