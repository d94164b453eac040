"""The UI's login (the users file, or --auth USER:PASSWORD), hardened around Gradio's own.

- `LoginThrottle.check` is what Gradio asks (its `auth` may be an async callable):
  failed logins are answered later and later, per client address and per user name,
  and attempts from one address or for one name wait their turn, so guessing in
  parallel gains nothing. It sleeps with asyncio: the event loop never blocks.
- `UILoginGate` (ASGI) refuses a UI request with a body before it is read unless it
  carries a logged-in session, so a client that has not logged in cannot make the
  server buffer anything; and it tells the throttle which address is logging in.
- `SessionTokens` puts Gradio's logged-in tokens in Hearth's `Sessions`, so a UI
  session expires (--session-hours), ends at /logout, and ends when its user is removed.

Plain asyncio and ASGI, no web framework."""
from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar

from webui.accounts.sessions import Sessions
from webui.errors import UserError

log = logging.getLogger(__name__)

LOGIN_PATHS = ("/login", "/login/")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Which address is logging in: Gradio passes the callable only a name and a password.
CLIENT_ADDRESS: ContextVar[str] = ContextVar("hearth_login_client", default="")


def parse_auth(auth: str) -> tuple[str, str]:
    """"USER:PASSWORD" -> (user, password); the user as Gradio reads a typed one (stripped)."""
    user, _, password = auth.partition(":")
    return user.strip(), password


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class LoginThrottle:
    FREE_FAILURES = 3  # a person mistyping is not slowed down
    MAX_DELAY = 30.0  # seconds a failed answer is held back, at most
    FORGET_AFTER = 15 * 60.0  # seconds without a failure after which a key starts afresh
    MAX_TRACKED = 10_000  # keys remembered, so a flood of names cannot grow memory for ever
    NAME_CHARS = 128  # of a typed name, kept as its key: a guesser's megabyte names are not stored

    def __init__(self, user: str | None = None, password: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 verify: Callable[[str, str], bool] | None = None):
        """Either one `user` and `password`, or `verify(name, password)` (the users file,
        through Accounts.check_password: scrypt, run off the event loop)."""
        self.user = user
        self.password = password
        self.clock = clock
        self.verify = verify
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # oldest failure first
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    def delay(self, failures: int) -> float:
        """Seconds the answer to the `failures`-th failure in a row waits: 0, 0, 0, 1, 2, 4, ... 30."""
        if failures <= self.FREE_FAILURES:
            return 0.0
        return min(self.MAX_DELAY, 2.0 ** (failures - self.FREE_FAILURES - 1))

    def failures(self, key: tuple[str, str]) -> int:
        count, last = self._failures.get(key, (0, 0.0))
        return count if self.clock() - last < self.FORGET_AFTER else 0

    async def check(self, username: str, password: str) -> bool:
        """Gradio's auth callable: whether this name and password log in."""
        keys = (("address", CLIENT_ADDRESS.get()), ("user", username[:self.NAME_CHARS]))
        async with self._turns(keys):
            if self.verify is not None:
                # scrypt takes ~33 ms of CPU: in a thread, so the event loop never waits on it.
                try:
                    right = await asyncio.to_thread(self.verify, username, password)
                except UserError as e:  # the users file cannot be read: nobody logs in, and the log says why
                    log.warning("refused a login: %s", e)
                    return False
            else:
                # Both compared in full, whatever the first says, so timing tells nothing.
                right = _same(username, self.user or "") & _same(password, self.password or "")
            if right:
                for key in keys:
                    self._failures.pop(key, None)
                return True
            counts = [self._failed(key) for key in keys]
            await asyncio.sleep(self.delay(max(counts)))
            return False

    def _failed(self, key: tuple[str, str]) -> int:
        now = self.clock()
        count = self.failures(key) + 1
        self._failures.pop(key, None)
        self._failures[key] = (count, now)
        while self._failures:
            oldest, (_, last) = next(iter(self._failures.items()))
            if now - last < self.FORGET_AFTER and len(self._failures) <= self.MAX_TRACKED:
                break
            del self._failures[oldest]
        return count

    @asynccontextmanager
    async def _turns(self, keys):
        """One attempt at a time per address and per name (always taken in that order)."""
        async with AsyncExitStack() as stack:
            for key in keys:
                lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
                self._locks[key] = (lock, users + 1)
                stack.callback(self._release, key)
                await stack.enter_async_context(lock)
            yield

    def _release(self, key) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class SessionTokens(MutableMapping):
    """Gradio's table of logged-in tokens (`app.tokens`: token -> user name), kept in
    Hearth's `Sessions` instead of a plain dict: Gradio's own login adds to it and its
    /logout deletes from it, and every lookup Gradio makes (the page, the queue, the
    login gate) now finds nothing for an expired session or a removed user."""

    def __init__(self, sessions: Sessions):
        self.sessions = sessions

    def __getitem__(self, token: str) -> str:
        try:
            user = self.sessions.user_of(token) if isinstance(token, str) else None
        except UserError as e:
            # The users file cannot be read (edited by hand): nobody is logged in until it can,
            # and the session is kept for then. Gradio shows the login page, not a 500.
            log.warning("treating a UI session as logged out: %s", e)
            raise KeyError(token) from None
        if user is None:
            raise KeyError(token)
        return user

    def __setitem__(self, token: str, user: str) -> None:
        self.sessions.start(user, token)

    def __delitem__(self, token: str) -> None:
        self.sessions.end(token)

    def __iter__(self) -> Iterator[str]:
        return iter(self._live())

    def __len__(self) -> int:
        return len(self._live())

    def _live(self) -> list[str]:
        try:
            return self.sessions.tokens()
        except UserError:
            return []


def _cookies(scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                found.setdefault(key, val.strip('"'))
    return found


class UILoginGate:
    """ASGI middleware (with --auth only). `logged_in(cookies)` says whether a request's
    cookies hold a live UI session; `exempt` are the API's paths, which take a key."""

    def __init__(self, app, logged_in: Callable[[dict[str, str]], bool], exempt: tuple[str, ...]):
        self.app = app
        self.logged_in = logged_in
        self.exempt = exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        if scope["path"] in LOGIN_PATHS:
            client = scope.get("client")
            token = CLIENT_ADDRESS.set(client[0] if client else "")
            try:
                await self.app(scope, receive, send)
            finally:
                CLIENT_ADDRESS.reset(token)
            return
        if scope["method"] in BODY_METHODS and not self.logged_in(_cookies(scope)):
            await _refuse(send)
            return
        await self.app(scope, receive, send)


async def _refuse(send) -> None:
    body = b'{"detail": "log in first: no live session (never logged in, logged out, expired, or the user was removed)"}'
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
