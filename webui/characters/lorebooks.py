"""Standalone lorebooks: JSON files in `<user data>/lorebooks/`, one book each, in
either format lorebook.py reads. A chat chooses which of them it uses (by name, the
file's stem); a character's own book comes with its card."""
from __future__ import annotations

import threading
from pathlib import Path

from webui.characters.lorebook import MAX_LOREBOOK_BYTES, Lorebook, LorebookError, read_lorebook
from webui.errors import ErrorKind
from webui.userdata.atomic import write_bytes_atomic
from webui.userdata.folders import InvalidName, check_name


class LorebookStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        # Every chat turn loads its books: a file is parsed again only when it changed.
        self._parsed: dict[Path, tuple[tuple[int, int], Lorebook]] = {}

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted((p.stem for p in self.folder.glob("*.json")), key=str.casefold)

    def _path(self, name: str) -> Path:
        try:
            return self.folder / f"{check_name(name, 'lorebook name')}.json"
        except InvalidName as e:
            raise LorebookError(str(e)) from None

    def load(self, name: str) -> Lorebook:
        path = self._path(name)
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._parsed.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            if st.st_size > MAX_LOREBOOK_BYTES:
                raise LorebookError(f"{path.name} is too large to be a lorebook")
            raw = path.read_bytes()
        except FileNotFoundError:
            raise LorebookError(f"no lorebook named {name!r}", kind=ErrorKind.NOT_FOUND) from None
        try:
            book = read_lorebook(raw, path.stem)
        except LorebookError as e:
            raise LorebookError(f"{path.name}: {e}") from None
        self._parsed[path] = (stamp, book)
        return book

    def import_file(self, raw: bytes, name: str) -> Lorebook:
        """Check an uploaded lorebook completely, then keep it under `name` (replacing
        one of that name)."""
        path = self._path(name)
        book = read_lorebook(raw, path.stem)
        with self._lock:
            write_bytes_atomic(path, raw)
        return book
