"""Extension API routes on the server (FastAPI; imported by webui.app.server only).

Every loadable extension's router is mounted once, at start, under
/extensions/NAME/. A dependency answers 404 while the extension is off, asks for
the API key like the rest of the API, and turns an exception from the extension's
route into a one-line 500 answer and a fault (the extension is switched off).
"""
from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError

from webui.api.auth import require_api_key
from webui.extensions.manager import ExtensionManager

log = logging.getLogger(__name__)

EXTENSIONS_PREFIX = "/extensions"


def extension_guard(manager: ExtensionManager, name: str):
    def guard():
        if not manager.is_enabled(name):
            raise HTTPException(404, f"extension {name} is off: switch it on in the Extensions tab")
        try:
            yield
        except (HTTPException, RequestValidationError):
            raise  # the extension's own, deliberate answers
        except Exception as e:
            manager.route_failed(name, e)
            raise HTTPException(500, f"extension {name} failed and was switched off: "
                                     f"{type(e).__name__}: {e}") from None

    return guard


def routes_problem(router, prefix: str) -> str | None:
    """Why these routes would break the app's OpenAPI schema (/docs, /openapi.json:
    built lazily, for every route at once), or None. Tried on a throwaway app."""
    trial = FastAPI()
    try:
        trial.include_router(router, prefix=prefix)
        trial.openapi()
    except Exception as e:
        return f"its API routes are broken: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None


def mount_extension_routes(app: FastAPI, manager: ExtensionManager) -> list[str]:
    """Mount each extension's api_router, behind the API key like the rest of the API;
    returns the prefixes mounted. Called by install_api, before Gradio takes "/"."""
    mounted = []
    for ext in manager.with_hook("api_router"):
        router = manager.router(ext)
        if router is None:
            continue
        prefix = f"{EXTENSIONS_PREFIX}/{ext.name}"
        problem = routes_problem(router, prefix)
        if problem:
            manager.route_failed(ext.name, RuntimeError(problem), mounting=True)
            continue
        app.include_router(router, prefix=prefix, tags=[f"Extension: {ext.title}"],
                           dependencies=[Depends(require_api_key),
                                         Depends(extension_guard(manager, ext.name))])
        mounted.append(prefix)
        log.info("extension %s: API routes under %s/", ext.name, prefix)
    return mounted
