"""The load route refuses a KV-cache type or RoPE value llama.cpp cannot use with a 400
and one line, before any model is touched (the options are checked when they are built)."""
from __future__ import annotations

import dataclasses

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from webui.api import install_api
from webui.config import ServerSettings
from webui.hearth import Hearth


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    core = Hearth(tmp_path_factory.mktemp("models"), user_data_dir=tmp_path_factory.mktemp("user_data"))
    app = FastAPI()
    install_api(app, core, dataclasses.replace(ServerSettings()))
    with TestClient(app) as test_client:
        yield test_client
    core.engine.close()


@pytest.mark.parametrize("args, words", [
    ({"type_v": "q8_0"}, "type_v=q8_0 needs flash_attn on"),
    ({"type_k": "q2_k"}, "type_k must be one of"),
    ({"rope_freq_scale": 3}, "rope_freq_scale must be at most 1"),
    ({"rope_freq_base": -1}, "rope_freq_base must be at least 0"),
    ({"rope_scaling": "none", "rope_freq_scale": 0.5}, "does nothing with rope_scaling=none"),
])
def test_bad_kv_and_rope_args_are_a_400_in_one_line(client, args, words):
    answer = client.post("/v1/internal/model/load", json={"model_name": "", "loader": "llama.cpp", "args": args})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert words in message and "\n" not in message
    assert client.get("/v1/internal/model/info").json()["model_name"] is None  # nothing was loaded
