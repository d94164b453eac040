"""The API's routers are module-level objects that get the core and the settings
through dependencies, and /openapi.json documents every loader's options (generated
from each loader's Options dataclass), while a bad option still fails in build()."""
from __future__ import annotations

import dataclasses

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

import loaders
from loaders.fields import describe
from webui.api import ROUTERS, completions, embeddings, install_api, messages, models
from webui.config import ServerSettings
from webui.hearth import Hearth


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    hearth = Hearth(tmp_path_factory.mktemp("models"), user_data_dir=tmp_path_factory.mktemp("user_data"))
    yield hearth
    hearth.engine.close()


def client_for(core, **settings) -> TestClient:
    app = FastAPI()
    install_api(app, core, dataclasses.replace(ServerSettings(), **settings))
    return TestClient(app)


def test_routers_are_module_level_and_mounted_in_one_place():
    domains = (completions, embeddings, messages, models)
    assert all(isinstance(domain.router, APIRouter) for domain in domains)
    assert ROUTERS == tuple(domain.router for domain in domains)
    paths = {route.path for router in ROUTERS for route in router.routes}
    assert {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/models",
            "/v1/internal/model/load", "/v1/internal/model/lora"} <= paths


def test_each_app_answers_with_its_own_settings(core):
    """The same routers on two apps: nothing was captured when they were defined."""
    with client_for(core, api_key="k3y") as locked, client_for(core) as open_:
        assert locked.get("/v1/models").status_code == 401
        assert locked.get("/v1/models", headers={"Authorization": "Bearer k3y"}).json()["data"] == []
        assert open_.get("/v1/models").status_code == 200
        assert open_.get("/v1/internal/model/info").json()["model_name"] is None


def test_openapi_documents_every_option_of_every_loader(core):
    with client_for(core) as client:
        schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    args = components["LoadModelRequest"]["properties"]["args"]
    documented = {ref["$ref"].rsplit("/", 1)[-1] for ref in args["anyOf"] if "$ref" in ref}
    for name in loaders.names():
        options = loaders.get(name).Options
        assert options.__name__ in documented, name
        model = components[options.__name__]
        assert model["additionalProperties"] is False
        for spec in describe(options):
            field = model["properties"][spec.name]
            assert field["description"] == spec.help
            assert field["default"] == (list(spec.default) if isinstance(spec.default, tuple) else spec.default)
            if spec.minimum is not None:
                key = "exclusiveMinimum" if spec.exclusive_minimum else "minimum"
                assert field[key] == spec.minimum, spec.name
            if spec.choices is not None:
                assert field["enum"] == list(spec.choices), spec.name


@pytest.mark.parametrize("args, status, words", [
    ({"n_ctx": -5}, 400, "n_ctx must be at least 0"),
    ({"n_ctx": "many"}, 400, "n_ctx must be a whole number"),
    ({"no_such_option": 1}, 400, "unknown setting 'no_such_option'"),
    (5, 422, "args: must be an object"),
])
def test_load_options_are_still_checked_by_build_in_one_line(core, args, status, words):
    with client_for(core) as client:
        answer = client.post("/v1/internal/model/load", json={"model_name": "", "loader": "llama.cpp", "args": args})
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]["message"]
    assert words in message and "\n" not in message
