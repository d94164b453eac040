"""Who may do what: the users file, or the one-user shortcut of `--auth USER:PASSWORD`
and the one-key shortcut of `--api-key KEY` (both act as an admin).

Without a users file Hearth is single-user: one person ("local", or the --auth user),
who is an admin, with the data folder laid out as it always was. With users in the
file, each user's data lives in `user_data/users/NAME/`."""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from webui.accounts.current import LOCAL_USER
from webui.accounts.passwords import dummy_hash, verify_password
from webui.accounts.users import UserBook
from webui.errors import ErrorKind, UserError


class NotAllowed(UserError):
    """The user's role does not allow this (one line; the API answers 403)."""

    kind = ErrorKind.INVALID


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class Accounts:
    book: UserBook
    shortcut: tuple[str, str] | None = None  # --auth USER:PASSWORD
    api_key: str | None = None  # --api-key KEY

    @property
    def separate(self) -> bool:
        """Whether each user has a folder of their own (there are users in the file)."""
        return bool(self.book)

    @property
    def login_required(self) -> bool:
        return self.separate or self.shortcut is not None

    @property
    def keys_required(self) -> bool:
        return bool(self.api_key) or any(u.key_hash for u in self.book.users())

    def first_admin(self) -> str:
        """Who a single-user folder belongs to, and who the --api-key shortcut acts as."""
        admin = self.book.first_admin()
        if admin is not None:
            return admin.name
        return self.shortcut[0] if self.shortcut else LOCAL_USER

    def exists(self, name: str) -> bool:
        if self.shortcut and name == self.shortcut[0]:
            return True
        return self.book.get(name) is not None if self.separate else name == LOCAL_USER

    def session_stamp(self, name: str) -> str | None:
        """What a UI session of `name` must still match to stay live (Sessions): None once
        the user is gone; their password hash, which `hearth users passwd` (and a removal
        followed by an add of the same name) replaces, salt and all."""
        if self.shortcut and name == self.shortcut[0]:
            return ""
        if not self.separate:
            return "" if name == LOCAL_USER else None
        user = self.book.get(name)
        return user.password_hash if user is not None else None

    def is_admin(self, name: str) -> bool:
        if not self.separate or (self.shortcut and name == self.shortcut[0]):
            return True  # single-user: the one user runs everything
        user = self.book.get(name)
        return user is not None and user.is_admin

    def check_password(self, name: str, password: str) -> bool:
        """Whether this name and password log in (the same time whether or not the name exists)."""
        if self.shortcut is not None and name == self.shortcut[0]:
            verify_password(password, dummy_hash())  # the same cost as a users-file check
            return _same(password, self.shortcut[1])
        return self.book.verify(name, password) is not None

    def user_for_key(self, key: str) -> str | None:
        """The user an API key belongs to (the --api-key shortcut: the first admin)."""
        if self.api_key and key and _same(key, self.api_key):
            return self.first_admin()
        user = self.book.user_for_key(key)
        return user.name if user is not None else None

    def require_admin(self, name: str, what: str) -> None:
        if not self.is_admin(name):
            raise NotAllowed(f"only an admin can {what}; you are logged in as {name!r}")
