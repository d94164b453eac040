"""One HTTP server: the Gradio UI at /, with /healthz and the HTTP API beside it."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# No phoning home: this runs on machines that may have no network at all.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from loaders.base import LoadError  # noqa: E402
from webui import __version__  # noqa: E402
from webui.app.flags import loader_options_from_args  # noqa: E402
from webui.config import ServerSettings  # noqa: E402
from webui.hearth import Hearth  # noqa: E402

log = logging.getLogger(__name__)


def create_app(hearth: Hearth, settings: ServerSettings):
    # The faces import Gradio and FastAPI (seconds): only when serving, never for --help.
    import gradio as gr
    from fastapi import FastAPI

    from webui.api import install_api
    from webui.ui import CSS, build_ui

    app = FastAPI(title="Hearth", version=__version__, docs_url="/docs")

    @app.get("/healthz")
    def health() -> dict:
        loaded = hearth.models.current
        return {"status": "ok", "model": loaded.name if loaded else None,
                "queue": hearth.engine.queue_length}

    # The API's routers and extensions' own routes (/extensions/NAME/), before Gradio
    # takes "/"; install_api puts hearth and settings on app.state for the routes.
    install_api(app, hearth, settings)
    auth = tuple(settings.auth.split(":", 1)) if settings.auth else None
    return gr.mount_gradio_app(app, build_ui(hearth), path="/", auth=auth, css=CSS,
                               ssr_mode=False, footer_links=[])


def load_initial_model(hearth: Hearth, settings: ServerSettings, args: argparse.Namespace) -> None:
    try:
        path = hearth.resolve_model(settings.model) if settings.model else None
        if path is not None:
            loader = hearth.models.resolve_loader(path, settings.loader)
        else:
            loader = settings.loader or "llama.cpp"
        loaded = hearth.load_model(settings.model, loader, loader_options_from_args(args, loader))
    except LoadError as e:
        # Serve anyway: the user can pick another model in the Model tab.
        print(f"hearth: {e}", file=sys.stderr)
        return
    print(f"hearth: loaded {loaded.name} with {loaded.loader} in {loaded.load_seconds:.1f}s", flush=True)


def start_extensions(hearth: Hearth, settings: ServerSettings) -> None:
    """Find extensions and switch on those asked for. One that cannot be
    switched on is reported, and Hearth serves without it."""
    hearth.extensions.timeout = settings.extension_timeout
    for problem in hearth.extensions.start(settings.extensions, [Path(d) for d in settings.extension_dirs]):
        print(f"hearth: {problem}", file=sys.stderr, flush=True)


def create_hearth(settings: ServerSettings) -> Hearth:
    return Hearth(settings.models_dir, user_data_dir=settings.user_data)


def serve(settings: ServerSettings, args: argparse.Namespace) -> int:
    import uvicorn

    hearth = create_hearth(settings)
    start_extensions(hearth, settings)  # before the model loads, so on_model_load hooks see it
    if not settings.no_model:
        load_initial_model(hearth, settings, args)
    app = create_app(hearth, settings)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"hearth: serving on http://{shown}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0
