"""The API face shows a UserError by its kind, in one table, whatever its message says."""
from __future__ import annotations

import pytest

fastapi = pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from loaders.base import GenerationError, LoadError  # noqa: E402
from loaders.errors import ErrorKind, UserError  # noqa: E402
from webui.api.errors import HTTP_OF_KIND, api_error, install_error_handlers  # noqa: E402
from webui.chat.context import ContextOverflow  # noqa: E402
from webui.runtime.model_manager import NoModelLoaded  # noqa: E402


def test_every_kind_has_a_status():
    assert set(HTTP_OF_KIND) == set(ErrorKind)


@pytest.mark.parametrize("kind, status", [
    (ErrorKind.INVALID, 400), (ErrorKind.NOT_FOUND, 404), (ErrorKind.CONFLICT, 409),
    (ErrorKind.TOO_LARGE, 413), (ErrorKind.BUSY, 429), (ErrorKind.UNAVAILABLE, 503),
    (ErrorKind.FAILED, 400), (ErrorKind.INTERNAL, 500),
])
def test_each_kind_maps_to_its_status(kind, status):
    assert api_error(UserError("x", kind=kind)).status == status


def test_the_codes_clients_knew_are_kept():
    assert (api_error(GenerationError("the prompt is 3000 tokens")).status,
            api_error(GenerationError("the prompt is 3000 tokens")).code) == (400, "generation_failed")
    unloaded = api_error(NoModelLoaded("no model is loaded: load one in the Model tab"))
    assert (unloaded.status, unloaded.code) == (503, "model_not_loaded")
    bug = api_error(UserError("generation failed: KeyError: 'x'", kind=ErrorKind.INTERNAL))
    assert (bug.status, bug.code) == (500, "generation_failed")


def test_the_message_does_not_decide_the_status():
    # Before kinds, a message that began like this was taken for a bug (500).
    assert api_error(LoadError("generation failed: the engine is busy")).status == 400
    assert api_error(UserError("no model is loaded, oddly", kind=ErrorKind.INVALID)).status == 400


def test_a_route_may_let_a_user_error_propagate():
    app = fastapi.FastAPI()
    install_error_handlers(app)

    @app.get("/overflow")
    def overflow():
        raise ContextOverflow("the prompt needs 3000 tokens\nbut only 2048 are free")

    answer = TestClient(app).get("/overflow")
    assert answer.status_code == 413
    assert answer.json() == {"error": {"message": "the prompt needs 3000 tokens but only 2048 are free",
                                       "type": "invalid_request_error", "param": None, "code": "too_large"}}
