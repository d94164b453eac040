"""The API's keys and roles on an app (FastAPI's TestClient, the real routers): with
users but no keys, the model routes want an admin's key; --api-key acts as the first
admin; without users Hearth is single-user and open on this machine, as before."""
from __future__ import annotations

import dataclasses

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from webui.accounts.current import acting_as, for_end_user
from webui.accounts.users import AccountError, UserBook
from webui.api import install_api
from webui.config import ServerSettings
from webui.hearth import Hearth


@pytest.fixture
def hearth_with_users(tmp_path):
    UserBook(tmp_path / "users.json").add("alice", "alice-password")
    UserBook(tmp_path / "users.json").add("bob", "bob-password")
    hearth = Hearth(tmp_path / "models", user_data_dir=tmp_path)
    yield hearth
    hearth.engine.close()


def client(hearth: Hearth, **settings) -> TestClient:
    app = FastAPI()
    install_api(app, hearth, dataclasses.replace(ServerSettings(), **settings))
    return TestClient(app)


def test_the_generation_queue_knows_whose_request_it_is(hearth_with_users):
    with acting_as("bob"):
        assert hearth_with_users.engine.owner_of() == "bob"
        with for_end_user("ann"):  # OpenAI's `user` in a request with bob's key
            assert hearth_with_users.engine.owner_of() == "bob/ann"
            assert hearth_with_users.space().data.root.name == "bob"  # still bob's files
    assert hearth_with_users.engine.owner_of() == "local"


def test_with_users_but_no_key_the_model_routes_ask_for_an_admins_key(hearth_with_users):
    answer = client(hearth_with_users).post("/v1/internal/model/unload")
    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == ("only an admin's API key may load, unload or change models; "
                                                "send an admin's key ('hearth users key NAME')")


def test_the_api_key_shortcut_is_the_first_admin_and_a_users_key_is_theirs(hearth_with_users):
    hearth_with_users.accounts.api_key = "shortcut"
    bobs = hearth_with_users.accounts.book.new_key("bob")
    api = client(hearth_with_users, api_key="shortcut")
    assert api.post("/v1/internal/model/unload", headers={"Authorization": "Bearer shortcut"}).status_code == 200
    assert api.post("/v1/internal/model/unload", headers={"Authorization": f"Bearer {bobs}"}).status_code == 403
    assert api.get("/v1/models", headers={"Authorization": f"Bearer {bobs}"}).status_code == 200
    assert api.get("/v1/models").status_code == 401


def test_without_users_the_local_api_is_open_and_an_admins_as_before(tmp_path):
    hearth = Hearth(tmp_path / "models", user_data_dir=tmp_path)
    try:
        assert client(hearth).post("/v1/internal/model/unload").status_code == 200
    finally:
        hearth.engine.close()


def test_a_keyless_request_is_nobodys_admin(hearth_with_users):
    """With users but no keys, a request without a key runs as "local", which no user may be called."""
    with pytest.raises(AccountError, match="reserved"):
        hearth_with_users.accounts.book.add("local", "local-password", role="admin")
    assert client(hearth_with_users).post("/v1/internal/model/unload").status_code == 403
