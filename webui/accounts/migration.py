"""A single-user data folder becomes the first admin's when accounts are switched on:
its chats, characters, presets, lorebooks, settings and extension data move from
`user_data/` into `user_data/users/<admin>/`, once. The pieces are moved into a
staging folder first and that folder is renamed into place in one step, so a crash
leaves either the old layout or the new one; once the admin's folder exists this is
a no-op."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from webui.userdata.folders import UserData

log = logging.getLogger(__name__)

# What a user owns in a single-user folder (UserData's paths, extension data included).
# The Python tools and mcp.json stay: they run in the server process, for every user.
PERSONAL = ("histories", "characters", "presets", "lorebooks", "settings.yaml", "extension_data")


def migrate_single_user(data: UserData, admin: str) -> list[str]:
    """Move the single-user data to `admin`'s folder if that folder does not exist yet;
    returns what moved (nothing the second time)."""
    target = data.for_user(admin).root
    found = [name for name in PERSONAL if (data.root / name).exists()]
    if target.exists() or not found:
        return []
    staging = target.parent / f".migrating-{admin}"
    if staging.exists():  # an interrupted earlier try: its pieces go back first
        for piece in staging.iterdir():
            if not (data.root / piece.name).exists():
                os.replace(piece, data.root / piece.name)
        shutil.rmtree(staging)
        found = [name for name in PERSONAL if (data.root / name).exists()]
    staging.mkdir(parents=True)
    for name in found:
        os.replace(data.root / name, staging / name)
    os.replace(staging, target)
    log.warning("moved the single-user data (%s) from %s to %s: it now belongs to user %r",
                ", ".join(found), data.root, target, admin)
    return found


def personal_paths(root: Path) -> list[Path]:
    return [root / name for name in PERSONAL]
