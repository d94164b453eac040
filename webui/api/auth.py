"""API keys: `Authorization: Bearer KEY` (what OpenAI clients send) or `X-API-Key`,
checked in constant time so response timing says nothing about how much of a guess
was right.

Checked twice on purpose: `APIKeyGate` (ASGI) refuses a request before a byte of its
body is read, so a client without the key cannot make the server buffer anything;
the `require_api_key` dependency documents the key in /docs and guards routers
mounted on an app without the gate."""
from __future__ import annotations

import hmac
from collections.abc import Mapping

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.datastructures import Headers

from webui.accounts.access import Accounts
from webui.accounts.current import acting_as, current_user
from webui.api.deps import get_hearth, get_settings
from webui.api.errors import APIError
from webui.api.responses import send_refusal
from webui.config import ServerSettings, env_name
from webui.errors import UserError
from webui.hearth import Hearth

_bearer = HTTPBearer(auto_error=False, description=f"A user's key ('hearth users key NAME') or the key given "
                     f"to Hearth with --api-key (or {env_name('api_key')}); not needed when Hearth runs without keys.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def keys_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def given_key(headers: Mapping[str, str]) -> str:
    """The key a request carries: a Bearer token (as HTTPBearer reads it), else X-API-Key."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "")


def key_problem(given: str, expected: str | None) -> APIError | None:
    """Why a request with key `given` may not pass (None: it may; any does without a key set)."""
    if not expected:
        return None
    if not given:
        return APIError(401, "an API key is required: send the header 'Authorization: Bearer KEY'",
                        code="missing_api_key", headers=_CHALLENGE)
    if not keys_match(given, expected):
        return APIError(401, "the API key is wrong", code="invalid_api_key", headers=_CHALLENGE)
    return None


def identify(given: str, api_key: str | None, accounts: Accounts | None) -> tuple[str | None, APIError | None]:
    """(the user a key belongs to, None) or (None, why it may not pass). Without any key
    set (no --api-key, no user with a key) every request passes as the local user."""
    if accounts is None or not accounts.keys_required:
        return None, key_problem(given, api_key)
    if not given:
        return None, key_problem(given, "required")
    user = accounts.user_for_key(given)
    if user is None and api_key and keys_match(given, api_key):
        user = accounts.first_admin()
    if user is None:
        return None, APIError(401, "the API key is wrong", code="invalid_api_key", headers=_CHALLENGE)
    return user, None


def _accounts(request: Request) -> Accounts | None:
    hearth = getattr(request.app.state, "hearth", None)
    return getattr(hearth, "accounts", None)


def require_api_key(request: Request, _credentials=Depends(_bearer),
                    settings: ServerSettings = Depends(get_settings)) -> None:
    """Lets a request through only with a right key (any request, when none is set)."""
    _, problem = identify(given_key(request.headers), settings.api_key, _accounts(request))
    if problem is not None:
        raise problem


def require_admin(hearth: Hearth = Depends(get_hearth)) -> None:
    """The model routes: only an admin's key (403, one line, otherwise)."""
    user = current_user()
    if not hearth.is_admin(user):
        whose = (f"this key belongs to {user!r}" if hearth.accounts.exists(user)
                 else "send an admin's key ('hearth users key NAME')")
        raise APIError(403, f"only an admin's API key may load, unload or change models; {whose}", code="forbidden")


class APIKeyGate:
    """ASGI middleware: on the API's paths, no key, no body read; with a key, the
    request runs as the key's user (`current_user()`). CORS preflights carry no key
    by design and are answered before this (webui.api.cors)."""

    def __init__(self, app, api_key: str | None, prefixes: tuple[str, ...], accounts: Accounts | None = None):
        self.app = app
        self.api_key = api_key
        self.prefixes = prefixes
        self.accounts = accounts

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            try:
                user, problem = identify(given_key(Headers(scope=scope)), self.api_key, self.accounts)
            except UserError as e:  # a users file edited by hand into something unreadable
                problem = APIError(503, f"the server cannot check API keys: {e}", code="accounts_unavailable")
            if problem is not None:
                await send_refusal(send, problem.status, problem.message, problem.code,
                                   [(b"www-authenticate", b"Bearer")])
                return
            if user is not None:
                with acting_as(user):
                    await self.app(scope, receive, send)
                return
        await self.app(scope, receive, send)
