"""The OpenAI-compatible HTTP API: FastAPI routers on the same app as the UI, and a
thin face over the same core calls (`hearth.complete`, `hearth.chat`,
`hearth.load_model`), so the UI and the API share one model and one queue.

Each domain module defines its `router` at module level and gets the core and the
settings through dependencies (webui.api.deps); `install_api` mounts them all."""
from __future__ import annotations

from fastapi import Depends, FastAPI

from webui.api import completions, models
from webui.api.auth import require_api_key
from webui.api.errors import ERROR_RESPONSES, install_error_handlers
from webui.api.extension_routes import mount_extension_routes
from webui.api.limits import BodySizeLimit
from webui.config import ServerSettings
from webui.hearth import Hearth

ROUTERS = (completions.router, models.router)


def install_api(app: FastAPI, hearth: Hearth, settings: ServerSettings) -> None:
    """Routes, extensions' routes, OpenAI-shaped errors, size limits and CORS on `app`;
    call it before Gradio is mounted at "/" so these routes are matched first."""
    app.state.hearth = hearth
    app.state.settings = settings
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)
    mount_extension_routes(app, hearth.extensions)
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_request_mb * (1 << 20)))
    if settings.cors_origins:
        # Closed unless origins are listed: without this middleware a browser page
        # from another site cannot read any answer.
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"],
                           allow_credentials=False)


__all__ = ["ROUTERS", "install_api"]
