"""A character's avatar as a file Gradio may serve: the Character tab's picture and the
Chat tab's avatar beside the character's messages."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from webui.characters.cards import avatar_problem
from webui.characters.character import Character

_AVATAR_COPIES = Path(tempfile.gettempdir()) / "hearth-avatars"


def avatar_file(character: Character | None) -> str | None:
    """The avatar as a file Gradio may serve: a copy in the temp folder, because a path
    outside Gradio's allowed folders could not be served and the user data folder may be
    anywhere. Its bytes are copied, never decoded here, and only once its PNG header
    says its size is sane: the browser is the one decoder it meets. None when there is
    none, or it is refused (the character still shows, without its picture)."""
    path = character.avatar_path if character is not None else None
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            if avatar_problem(f.read(24)):
                return None  # an avatar saved before the size check: not shown
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()[:32]
        copy = _AVATAR_COPIES / f"{key}.png"
        if not copy.is_file():
            _AVATAR_COPIES.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=_AVATAR_COPIES, suffix=".tmp")  # one per handler thread
            os.close(fd)
            shutil.copyfile(path, tmp)
            os.replace(tmp, copy)
    except OSError:
        return None
    return str(copy)
