"""API keys: `Authorization: Bearer KEY` (what OpenAI clients send), checked in
constant time so response timing says nothing about how much of a guess was right."""
from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from webui.api.deps import get_settings
from webui.api.errors import APIError
from webui.config import ServerSettings, env_name

_bearer = HTTPBearer(auto_error=False, description=f"The key given to Hearth with --api-key "
                     f"(or {env_name('api_key')}); not needed when Hearth runs without one.")


def keys_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_api_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                    settings: ServerSettings = Depends(get_settings)) -> None:
    """Lets a request through only with the right key (any request, when none is set)."""
    if not settings.api_key:
        return
    given = credentials.credentials if credentials else request.headers.get("x-api-key", "")
    if not given:
        raise APIError(401, "an API key is required: send the header 'Authorization: Bearer KEY'",
                       code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
    if not keys_match(given, settings.api_key):
        raise APIError(401, "the API key is wrong", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
