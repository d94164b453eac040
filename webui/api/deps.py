"""What a route needs, as FastAPI dependencies: the Hearth core and the server settings,
put on `app.state` by `install_api`. The routers are module-level objects, so nothing
is captured in a closure and a test can mount them on any app it sets up the same way."""
from __future__ import annotations

from fastapi import Request

from webui.config import ServerSettings
from webui.hearth import Hearth


def get_hearth(request: Request) -> Hearth:
    return request.app.state.hearth


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings
