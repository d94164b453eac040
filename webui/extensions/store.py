"""Which extensions the user switched on, and each extension's own settings: one
JSON file in the user data folder (`extensions.json`), rewritten atomically on every
change. A damaged file is ignored (with a log line) and Hearth starts with no
extension switched on: settings never stop the app from starting."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from webui.userdata.atomic import write_text_atomic

log = logging.getLogger(__name__)

FILE_NAME = "extensions.json"  # in the user data folder; with accounts also each user's own (settings only)


class ExtensionStore:
    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None  # None: keep in memory (tests)
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        data: Any = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                log.warning("ignoring damaged extension settings %s: %s", self.path, e)
                data = {}
        if not isinstance(data, dict):
            data = {}
        enabled = data.get("enabled")
        settings = data.get("settings")
        self._data = {
            "enabled": [n for n in enabled if isinstance(n, str)] if isinstance(enabled, list) else [],
            "settings": {k: v for k, v in settings.items() if isinstance(v, dict)}
            if isinstance(settings, dict) else {},
        }
        return self._data

    def _save(self) -> None:
        if self.path is not None:
            write_text_atomic(self.path, json.dumps(self._data, indent=2, ensure_ascii=False) + "\n")

    def enabled(self) -> list[str]:
        with self._lock:
            return list(self._load()["enabled"])

    def set_enabled(self, name: str, on: bool) -> None:
        with self._lock:
            names = self._load()["enabled"]
            if on and name not in names:
                names.append(name)
            elif not on and name in names:
                names.remove(name)
            else:
                return
            self._save()

    def get(self, extension: str, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._load()["settings"].get(extension, {}).get(key, default)

    def set(self, extension: str, key: str, value: Any) -> None:
        json.dumps(value)  # refuse what cannot be saved, before changing anything
        with self._lock:
            self._load()["settings"].setdefault(extension, {})[key] = value
            self._save()
