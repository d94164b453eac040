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
from loaders.llamacpp import serve_many_clients  # noqa: E402
from webui import __version__  # noqa: E402
from webui.accounts.access import Accounts  # noqa: E402
from webui.accounts.migration import migrate_single_user  # noqa: E402
from webui.accounts.sessions import Sessions  # noqa: E402
from webui.accounts.users import UserBook  # noqa: E402
from webui.app.connections import bounded_h11_protocol  # noqa: E402
from webui.app.flags import loader_options_from_args  # noqa: E402
from webui.app.guards import RequestGuard  # noqa: E402
from webui.app.hosts import ServedHosts  # noqa: E402
from webui.app.idle_wake import WakeIdleModel, start_idle_unload  # noqa: E402
from webui.app.load_bar import load_bar  # noqa: E402
from webui.app.login import LoginThrottle, SessionTokens, UILoginGate, parse_auth  # noqa: E402
from webui.app.quiet_server import quiet_uvicorn_server  # noqa: E402
from webui.config import ServerSettings  # noqa: E402
from webui.hearth import Hearth  # noqa: E402
from webui.userdata.folders import UserData  # noqa: E402

log = logging.getLogger(__name__)

# Gradio's file uploads: the one UI path allowed bodies over --max-request-mb.
GRADIO_UPLOAD_PATH = "/gradio_api/upload"
MIB = 1 << 20
UVICORN_STARTUP_FAILURE = 3  # the exit status uvicorn.run gives when the server could not start


def create_app(hearth: Hearth, settings: ServerSettings):
    # The faces import Gradio and FastAPI (seconds): only when serving, never for --help.
    import gradio as gr
    from fastapi import FastAPI

    from webui.api import API_PREFIXES, install_api
    from webui.ui import CSS, build_ui
    from webui.ui.quiet_queue import quiet_gradio_queue

    app = FastAPI(title="Hearth", version=__version__, docs_url="/docs")
    # Innermost (added first): only requests that passed the guards and the key check
    # count as uses, or load the idle-unloaded model again.
    app.add_middleware(WakeIdleModel, models=hearth.models)

    @app.get("/healthz")
    def health() -> dict:
        loaded, parked = hearth.models.current, hearth.models.parked
        return {"status": "ok", "model": loaded.name if loaded else None,
                # --idle-unload: the model unloaded for being idle, which the next request loads again
                "idle_unloaded": parked.name if parked else None,
                "queue": hearth.engine.queue_length}

    # The API's routers and extensions' own routes (/extensions/NAME/), before Gradio
    # takes "/"; install_api puts hearth and settings on app.state for the routes.
    install_api(app, hearth, settings, upload_paths=(GRADIO_UPLOAD_PATH,))
    accounts = hearth.accounts
    # A Hearth made in code (the tests) has no shortcuts yet: the settings' are the ones served.
    if settings.auth and accounts.shortcut is None:
        accounts.shortcut = parse_auth(settings.auth)
    if settings.api_key and not accounts.api_key:
        accounts.api_key = settings.api_key
    throttle = LoginThrottle(verify=accounts.check_password) if accounts.login_required else None
    blocks = build_ui(hearth, max_text_chars=settings.max_prompt_chars)
    quiet_gradio_queue(blocks)  # no polling while idle: docs/BENCHMARKS.md, "Idle cost"
    gr.mount_gradio_app(app, blocks, path="/",
                        auth=throttle.check if throttle else None, css=CSS, ssr_mode=False, footer_links=[],
                        max_file_size=int(settings.max_upload_mb * MIB))
    if throttle is not None:
        # Gradio's own token table, kept in Sessions: they expire, /logout ends them, and
        # a user removed with `hearth users remove` or given a new password with
        # `hearth users passwd` is logged out at the next request.
        sessions = Sessions(settings.session_hours * 3600, stamp_of=accounts.session_stamp)
        gradio_app_of(app).tokens = SessionTokens(sessions)
        app.add_middleware(UILoginGate, logged_in=gradio_session_check(app), exempt=API_PREFIXES)
    # Outermost: a request must name this server and come from no other web page.
    app.add_middleware(RequestGuard, hosts=ServedHosts.for_settings(settings), cors_origins=settings.cors_origins,
                       api_prefixes=API_PREFIXES, json_only_prefixes=(API_PREFIXES[0],), on_refusal=_log_refusal)
    return app


def _log_refusal(line: str) -> None:
    log.warning("refused %s", line)


def gradio_app_of(app):
    """The Gradio app mounted at "/" on `app`."""
    from starlette.routing import Mount

    return next(route.app for route in app.routes if isinstance(route, Mount) and route.path == "")


def gradio_session_check(app):
    """Whether a request's cookies hold a live session of the Gradio app mounted on
    `app`: the cookie names and token table Gradio's own login check reads."""
    gradio_app = gradio_app_of(app)
    names = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")

    def logged_in(cookies: dict[str, str]) -> bool:
        return any(cookies.get(name) in gradio_app.tokens for name in names)

    return logged_in


def load_initial_model(hearth: Hearth, settings: ServerSettings, args: argparse.Namespace) -> None:
    try:
        path = hearth.resolve_model(settings.model) if settings.model else None
        if path is not None:
            loader = hearth.models.resolve_loader(path, settings.loader)
        else:
            loader = settings.loader or "llama.cpp"
        with load_bar() as bar:  # progress and time left on stderr
            loaded = hearth.load_model(settings.model, loader, loader_options_from_args(args, loader), progress=bar)
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


def accounts_for(settings: ServerSettings) -> Accounts:
    """The users file in --user-data, with --auth and --api-key as one-user and one-key
    shortcuts. With users in the file, the single-user data becomes the first admin's
    (once, logged)."""
    data = UserData.at(settings.user_data)
    accounts = Accounts(UserBook(data.users_file), parse_auth(settings.auth) if settings.auth else None,
                        settings.api_key)
    if accounts.separate:
        migrate_single_user(data, accounts.first_admin())
    return accounts


def chat_settings_folder(settings: ServerSettings) -> Path:
    """Where --mode/--character/--preset... are remembered: the user data folder, or with
    accounts the first admin's (after the single-user data has moved there)."""
    accounts = accounts_for(settings)
    data = UserData.at(settings.user_data)
    return data.for_user(accounts.first_admin()).root if accounts.separate else data.root


def create_hearth(settings: ServerSettings) -> Hearth:
    hearth = Hearth(settings.models_dir, user_data_dir=settings.user_data, accounts=accounts_for(settings))
    hearth.engine.per_owner_limit = settings.max_queue_per_user
    hearth.tool_grammar = settings.tool_grammar
    serve_many_clients(settings.listen)  # llama.cpp's parallel=0 then serves 2+ replies at once
    return hearth


def clear_text_warning(settings: ServerSettings) -> str | None:
    """Said once at start-up: on the network without TLS, anyone on the LAN can read a login."""
    if settings.listen and not settings.ssl_certfile:
        return ("warning: serving on the network without TLS: passwords, session cookies and API keys cross it "
                "in clear text; add --ssl-certfile and --ssl-keyfile")
    return None


def serve(settings: ServerSettings, args: argparse.Namespace) -> int:
    import uvicorn

    hearth = create_hearth(settings)
    start_extensions(hearth, settings)  # before the model loads, so on_model_load hooks see it
    if not settings.no_model:
        load_initial_model(hearth, settings, args)
    app = create_app(hearth, settings)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    shown = f"[{shown}]" if ":" in shown else shown
    tls = bool(settings.ssl_certfile)
    warning = clear_text_warning(settings)
    if warning:
        print(f"hearth: {warning}", file=sys.stderr, flush=True)
    print(f"hearth: serving on {'https' if tls else 'http'}://{shown}:{settings.port}", flush=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile,
                            http=bounded_h11_protocol(settings.max_connections_per_client, settings.header_timeout),
                            # An idle keep-alive connection is closed after 5 s; h11 refuses headers over 16 KiB.
                            timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024)
    server = quiet_uvicorn_server(config)  # ticks once a second, not ten times: docs/BENCHMARKS.md, "Idle cost"
    # Last, so building the UI (seconds) does not count as idle time.
    start_idle_unload(hearth.models, settings.idle_unload, lambda: hearth.engine.queue_length)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it caught once it has shut down
        pass
    return 0 if server.started else UVICORN_STARTUP_FAILURE
