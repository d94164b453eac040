"""The users file, `<user data>/users.json`: each user's name, role, password hash and
API key hash. Written atomically (a crash leaves the old file or the new one) and only
by `hearth users`; the server re-reads it when it changes, so a user removed or a
password changed on the command line takes effect on a running server at once."""
from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: one change at a time within this process only
    fcntl = None  # type: ignore[assignment]

from webui.accounts.current import LOCAL_USER
from webui.accounts.passwords import dummy_hash, hash_password, key_digest, verify_password
from webui.errors import ErrorKind, UserError
from webui.userdata.atomic import write_text_atomic

ADMIN = "admin"
USER = "user"
ROLES = (ADMIN, USER)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # scrypt reads all of it: a megabyte "password" is a cost, not a secret
USERS_FILE = "users.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
KEY_PREFIX = "hearth-"


class AccountError(UserError, ValueError):
    """A user name, password or role that cannot be used (one line)."""

    kind = ErrorKind.INVALID


class UnknownUser(AccountError):
    kind = ErrorKind.NOT_FOUND


def check_user_name(name: str) -> str:
    """A user name is also a folder name (user_data/users/NAME): letters, digits, _ and -.
    "local" is taken: it is who an API request without a key runs as, so a user of that
    name would hand their role and their folder to every keyless request."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name[:40]) if isinstance(name, str) else "that"
        raise AccountError(f"{shown} is not a valid user name: 1 to 32 letters, digits, '_' or '-', "
                           "starting with a letter or digit")
    if name == LOCAL_USER:
        raise AccountError(f"{name!r} is reserved (requests without a login or key run as {LOCAL_USER!r}): "
                           "choose another user name")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password is longer than {MAX_PASSWORD} characters")
    return password


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str = field(repr=False)
    key_hash: str | None = field(default=None, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


class UserBook:
    """The users in `path`; an absent file is an empty book (single-user Hearth)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # the cache below
        self._writing = threading.Lock()  # this book's own changes, one at a time
        # (inode, mtime_ns, size) of the file last read: every write replaces the file, so
        # a new inode says it changed even when the clock and the size say nothing.
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    # --- reading ------------------------------------------------------------------
    def _read(self) -> dict[str, User]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._seen, self._users = None, {}
                return self._users
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if self._seen != seen:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    # A hand-edited name is checked too: it becomes a folder name and a queue owner.
                    users = {check_user_name(name): User(name, entry["role"], entry["password"], entry.get("key"))
                             for name, entry in data["users"].items()}
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                    # Never fall back to "no users": that would open a server meant to be closed.
                    raise AccountError(f"cannot read the users file {self.path}: {e}") from None
                self._seen, self._users = seen, users
            return self._users

    def users(self) -> list[User]:
        return sorted(self._read().values(), key=lambda u: u.name.casefold())

    def names(self) -> list[str]:
        return [u.name for u in self.users()]

    def get(self, name: str) -> User | None:
        return self._read().get(name) if isinstance(name, str) else None

    def __bool__(self) -> bool:
        return bool(self._read())

    def first_admin(self) -> User | None:
        """The admin added first (the file keeps the order users were added in)."""
        return next((u for u in self._read().values() if u.is_admin), None)

    def verify(self, name: str, password: str) -> User | None:
        """The user, if `password` is theirs. An unknown name costs a hash check too."""
        user = self.get(name)
        right = verify_password(password, user.password_hash if user else dummy_hash())
        return user if right and user is not None else None

    def user_for_key(self, key: str) -> User | None:
        """The user whose API key this is. Every stored hash is compared (constant time)."""
        if not key:
            return None
        digest = key_digest(key).encode("ascii")
        found = None
        for user in self._read().values():
            if user.key_hash and secrets.compare_digest(user.key_hash.encode("ascii"), digest):
                found = user
        return found

    # --- writing (hearth users) ------------------------------------------------------
    def add(self, name: str, password: str, role: str | None = None) -> User:
        """A new user; the first user is an admin whatever `role` says, so there is always one."""
        check_user_name(name)
        check_password(password)
        hashed = hash_password(password)  # ~33 ms: before the lock, which others wait on
        with self._changing():
            users = dict(self._read())
            if name in users:
                raise AccountError(f"user {name!r} exists already: use 'hearth users passwd {name}'")
            role = ADMIN if not users else (role or USER)
            if role not in ROLES:
                raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
            users[name] = User(name, role, hashed)
            self._write(users)
            return users[name]

    def remove(self, name: str) -> None:
        with self._changing():
            users = dict(self._read())
            self._need(users, name)
            if users[name].is_admin and sum(u.is_admin for u in users.values()) == 1 and len(users) > 1:
                raise AccountError(f"{name!r} is the only admin: make another user an admin first")
            del users[name]
            self._write(users)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        hashed = hash_password(password)
        with self._changing():
            users = dict(self._read())
            self._need(users, name)
            users[name] = User(name, users[name].role, hashed, users[name].key_hash)
            self._write(users)

    def set_role(self, name: str, role: str) -> None:
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        with self._changing():
            users = dict(self._read())
            self._need(users, name)
            if role != ADMIN and users[name].is_admin and sum(u.is_admin for u in users.values()) == 1:
                raise AccountError(f"{name!r} is the only admin: make another user an admin first")
            old = users[name]
            users[name] = User(name, role, old.password_hash, old.key_hash)
            self._write(users)

    def new_key(self, name: str) -> str:
        """A new API key for `name` (the old one stops working). Only its hash is kept:
        the caller shows the key once."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._changing():
            users = dict(self._read())
            self._need(users, name)
            old = users[name]
            users[name] = User(name, old.role, old.password_hash, key_digest(key))
            self._write(users)
        return key

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """One change at a time, across processes (`users.json.lock`, flock): each change
        reads the file under the lock, so two `hearth users` at once cannot lose one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._writing, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    @staticmethod
    def _need(users: dict[str, User], name: str) -> None:
        if name not in users:
            check_user_name(name)
            raise UnknownUser(f"no user named {name!r}: 'hearth users list' shows them")

    def _write(self, users: dict[str, User]) -> None:
        data = {"version": 1, "users": {u.name: {"role": u.role, "password": u.password_hash,
                                                 **({"key": u.key_hash} if u.key_hash else {})}
                                        for u in users.values()}}
        write_text_atomic(self.path, json.dumps(data, indent=2) + "\n")
        try:
            os.chmod(self.path, 0o600)  # hashes only, but nobody else needs to read them
        except OSError:
            pass
