"""CORS for the API paths only, and every API preflight answered here.

Without this, a preflight for /v1/* would fall through to the UI mounted at "/", whose
CORS rules are not the API's. An origin listed with --cors-origins gets Starlette's
CORS answers; any other origin's preflight is refused, so a page elsewhere cannot
send a JSON request to the API. The UI never gets CORS from here."""
from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from webui.api.responses import send_refusal

ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-API-Key"]


class APICors:
    def __init__(self, app, origins: tuple[str, ...], prefixes: tuple[str, ...]):
        self.app = app
        self.prefixes = prefixes
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.cors = CORSMiddleware(app, allow_origins=sorted(self.origins), allow_methods=["GET", "POST", "OPTIONS"],
                                   allow_headers=ALLOWED_HEADERS, allow_credentials=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        listed = origin is not None and origin.rstrip("/") in self.origins
        if scope["method"] == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            if listed:
                await self.cors(scope, receive, send)
            else:
                await send_refusal(send, 403, f"the API is closed to web pages from {origin} (allow it with "
                                   "--cors-origins)", "cors_origin_not_allowed", [(b"vary", b"Origin")])
            return
        await (self.cors if listed else self.app)(scope, receive, send)
