"""UI sessions, kept on the server: a random token (the browser's cookie) -> the user
and when the session ends. A session ends at its expiry, at logout, and as soon as its
user is removed from the users file; an ended token is forgotten."""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable


class Sessions:
    def __init__(self, lifetime_s: float, user_exists: Callable[[str], bool] = lambda name: True,
                 clock: Callable[[], float] = time.monotonic):
        self.lifetime_s = lifetime_s
        self.user_exists = user_exists
        self.clock = clock
        self._lock = threading.Lock()
        self._live: dict[str, tuple[str, float]] = {}  # token -> (user, ends at)

    def start(self, user: str, token: str | None = None) -> str:
        """A new session for `user`; its token (random, 128 bits) unless one is given."""
        token = token or secrets.token_urlsafe(16)
        with self._lock:
            self._forget_ended()
            self._live[token] = (user, self.clock() + self.lifetime_s)
        return token

    def user_of(self, token: str | None) -> str | None:
        """The user of a live session; None for an unknown, expired or orphaned token."""
        if not token:
            return None
        with self._lock:
            entry = self._live.get(token)
            if entry is None:
                return None
            user, ends = entry
            if self.clock() >= ends or not self.user_exists(user):
                del self._live[token]
                return None
            return user

    def end(self, token: str) -> None:
        with self._lock:
            self._live.pop(token, None)

    def end_user(self, user: str) -> None:
        """Log `user` out everywhere."""
        with self._lock:
            for token in [t for t, (u, _) in self._live.items() if u == user]:
                del self._live[token]

    def tokens(self) -> list[str]:
        with self._lock:
            self._forget_ended()
            return list(self._live)

    def _forget_ended(self) -> None:
        now = self.clock()
        for token in [t for t, (_, ends) in self._live.items() if now >= ends]:
            del self._live[token]
