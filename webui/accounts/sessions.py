"""UI sessions, kept on the server: a random token (the browser's cookie) -> the user
and when the session ends. A session ends at its expiry, at logout, and as soon as its
user is removed from the users file or given a new password; an ended token is forgotten.

Each session remembers its user's stamp (`Accounts.session_stamp`: the password hash,
salted afresh by every `hearth users passwd` and `add`), so a user removed and added
again under the same name, or whose password was changed, is not let back in by a
cookie from before."""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable


class Sessions:
    def __init__(self, lifetime_s: float, stamp_of: Callable[[str], str | None] = lambda name: "",
                 clock: Callable[[], float] = time.monotonic):
        """`stamp_of(user)`: None once the user is gone, else a value that changes when
        their sessions must end."""
        self.lifetime_s = lifetime_s
        self.stamp_of = stamp_of
        self.clock = clock
        self._lock = threading.Lock()
        self._live: dict[str, tuple[str, float, str | None]] = {}  # token -> (user, ends at, stamp)

    def start(self, user: str, token: str | None = None) -> str:
        """A new session for `user`; its token (random, 128 bits) unless one is given."""
        token = token or secrets.token_urlsafe(16)
        stamp = self.stamp_of(user)
        with self._lock:
            self._forget_ended()
            self._live[token] = (user, self.clock() + self.lifetime_s, stamp)
        return token

    def user_of(self, token: str | None) -> str | None:
        """The user of a live session; None for an unknown, expired or orphaned token."""
        if not token:
            return None
        with self._lock:
            entry = self._live.get(token)
            if entry is None:
                return None
            if not self._alive(entry):
                del self._live[token]
                return None
            return entry[0]

    def end(self, token: str) -> None:
        with self._lock:
            self._live.pop(token, None)

    def end_user(self, user: str) -> None:
        """Log `user` out everywhere."""
        with self._lock:
            for token in [t for t, (u, _, _) in self._live.items() if u == user]:
                del self._live[token]

    def tokens(self) -> list[str]:
        """The live tokens only: a caller that looks each one up (Gradio's logout walks
        them all) never meets one that has ended in between."""
        with self._lock:
            for token in [t for t, entry in self._live.items() if not self._alive(entry)]:
                del self._live[token]
            return list(self._live)

    def _alive(self, entry: tuple[str, float, str | None]) -> bool:
        user, ends, stamp = entry
        if self.clock() >= ends:
            return False
        now = self.stamp_of(user)
        return now is not None and now == stamp

    def _forget_ended(self) -> None:
        now = self.clock()
        for token in [t for t, (_, ends, _) in self._live.items() if now >= ends]:
            del self._live[token]
