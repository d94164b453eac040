"""The OpenAI-compatible HTTP API: a FastAPI router on the same app as the UI, and a
thin face over the same core calls (`hearth.complete`, `hearth.chat`,
`hearth.load_model`), so the UI and the API share one model and one queue."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from webui.api.auth import api_key_dependency
from webui.api.completions import add_completion_routes
from webui.api.errors import ERROR_RESPONSES, install_error_handlers
from webui.api.limits import BodySizeLimit
from webui.api.models import add_model_routes


def create_api_router(hearth, settings) -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_key_dependency(settings.api_key))],
                       responses=ERROR_RESPONSES)
    add_completion_routes(router, hearth, settings)
    add_model_routes(router, hearth)
    return router


def install_api(app, hearth, settings) -> None:
    """Routes, OpenAI-shaped errors, size limits and CORS on `app`; call it before
    Gradio is mounted at "/" so these routes are matched first."""
    install_error_handlers(app)
    app.include_router(create_api_router(hearth, settings))
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_request_mb * (1 << 20)))
    if settings.cors_origins:
        # Closed unless origins are listed: without this middleware a browser page
        # from another site cannot read any answer.
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"],
                           allow_credentials=False)


__all__ = ["create_api_router", "install_api"]
