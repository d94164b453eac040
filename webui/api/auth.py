"""API keys: `Authorization: Bearer KEY` (what OpenAI clients send), checked in
constant time so response timing says nothing about how much of a guess was right."""
from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from webui.api.errors import APIError

_bearer = HTTPBearer(auto_error=False, description="The key given to Hearth with --api-key "
                     "(or HEARTH_API_KEY); not needed when Hearth runs without one.")


def keys_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def api_key_dependency(api_key: str | None):
    """A FastAPI dependency that lets a request through only with the right key."""

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if not api_key:
            return
        given = credentials.credentials if credentials else request.headers.get("x-api-key", "")
        if not given:
            raise APIError(401, "an API key is required: send the header 'Authorization: Bearer KEY'",
                           code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        if not keys_match(given, api_key):
            raise APIError(401, "the API key is wrong", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    return check
