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

from webui.api.deps import get_settings
from webui.api.errors import APIError
from webui.api.responses import send_refusal
from webui.config import ServerSettings, env_name

_bearer = HTTPBearer(auto_error=False, description=f"The key given to Hearth with --api-key "
                     f"(or {env_name('api_key')}); not needed when Hearth runs without one.")
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


def require_api_key(request: Request, _credentials=Depends(_bearer),
                    settings: ServerSettings = Depends(get_settings)) -> None:
    """Lets a request through only with the right key (any request, when none is set)."""
    problem = key_problem(given_key(request.headers), settings.api_key)
    if problem is not None:
        raise problem


class APIKeyGate:
    """ASGI middleware: on the API's paths, no key, no body read. CORS preflights
    carry no key by design and are answered before this (webui.api.cors)."""

    def __init__(self, app, api_key: str | None, prefixes: tuple[str, ...]):
        self.app = app
        self.api_key = api_key
        self.prefixes = prefixes

    async def __call__(self, scope, receive, send):
        if self.api_key and scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            problem = key_problem(given_key(Headers(scope=scope)), self.api_key)
            if problem is not None:
                await send_refusal(send, problem.status, problem.message, problem.code,
                                   [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)
