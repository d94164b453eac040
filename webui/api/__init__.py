"""The OpenAI-compatible HTTP API: FastAPI routers on the same app as the UI, and a
thin face over the same core calls (`hearth.complete`, `hearth.chat`,
`hearth.load_model`), so the UI and the API share one model and one queue.

Each domain module defines its `router` at module level and gets the core and the
settings through dependencies (webui.api.deps); `install_api` mounts them all."""
from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from webui.api import completions, embeddings, messages, models
from webui.api.auth import APIKeyGate, require_api_key
from webui.api.cors import APICors
from webui.api.errors import ERROR_RESPONSES, install_error_handlers
from webui.api.extension_routes import EXTENSIONS_PREFIX, mount_extension_routes
from webui.api.limits import API_PREFIX, BodySizeLimit
from webui.api.schemas import ErrorResponse
from webui.config import ServerSettings
from webui.hearth import Hearth

ROUTERS = (completions.router, embeddings.router, messages.router, models.router)
# The paths the API owns: the key, CORS and the API's error shape apply here.
API_PREFIXES = (API_PREFIX, EXTENSIONS_PREFIX + "/")
MIB = 1 << 20

# Answered before a route runs (webui.app.guards, the middleware below), so /docs and
# schema-driven clients know them too.
GUARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {403: "Sent by a web page of another origin (see --cors-origins).",
                         408: "The request body did not arrive in time (--body-timeout).",
                         415: "A form's content type: the API takes JSON bodies."}.items()
}


def install_api(app: FastAPI, hearth: Hearth, settings: ServerSettings, upload_paths: tuple[str, ...] = ()) -> None:
    """Routes, extensions' routes, OpenAI-shaped errors, body limits, API keys and CORS
    on `app`; call it before Gradio is mounted at "/" so these routes are matched first.
    The body limits hold for every request of the app: `upload_paths` (the UI's file
    uploads) may send up to --max-upload-mb, everything else --max-request-mb."""
    app.state.hearth = hearth
    app.state.settings = settings
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(require_api_key)],
                           responses={**ERROR_RESPONSES, **GUARD_RESPONSES})
    mount_extension_routes(app, hearth.extensions)
    # Added innermost first: a preflight is answered (CORS), then a request without
    # the key is refused before a byte of its body is read, then the body is bounded.
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_request_mb * MIB), timeout=settings.body_timeout,
                       larger={path: (int(settings.max_upload_mb * MIB), "--max-upload-mb") for path in upload_paths})
    app.add_middleware(APIKeyGate, api_key=settings.api_key, prefixes=API_PREFIXES, accounts=hearth.accounts)
    app.add_middleware(APICors, origins=settings.cors_origins, prefixes=API_PREFIXES)


__all__ = ["API_PREFIXES", "ROUTERS", "install_api"]
