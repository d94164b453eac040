"""The remote loader against a real engine: `python -m llama_cpp.server` serving the
built-in SmolLM2 GGUF on a free port, driven through Hearth's own core and queue."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from loaders.base import GenerationError, LoadError
from loaders.params import GenerationParams
from tests.support import ARTIFACTS, ROOT, free_port, stop_process
from webui.errors import UserError
from webui.hearth import Hearth
from webui.runtime.generation import Delta, Finished

PROMPT = "The three primary colours are"


def start_llama_cpp_server(model_path, port: int, log_name: str) -> subprocess.Popen:
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / log_name, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {(ARTIFACTS / log_name).read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("llama_cpp.server did not start") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    stop_process(proc)
    proc.log.close()


@pytest.fixture(scope="module")
def engine(default_model):
    port = free_port()
    proc = start_llama_cpp_server(default_model, port, f"llama-cpp-server-{port}.log")
    yield proc, f"http://127.0.0.1:{port}"
    if proc.poll() is None:
        stop(proc)


@pytest.fixture(scope="module")
def remote(engine):
    """A Hearth whose model is the engine, found by its URL alone (the loader is detected)."""
    core = Hearth(models_dir=ROOT / "no-models-here")
    core.load_model(engine[1] + "/v1", options={"remote_context_length": 2048})
    yield core
    core.unload_model()
    core.engine.close()


def test_loads_by_url_and_describes_the_engine(remote, engine, hearth):
    loaded = remote.models.current
    assert loaded.loader == "remote"
    assert loaded.name == engine[1] + "/v1"
    model = loaded.model
    assert model.model_id.endswith(".gguf")
    assert model.context_length == 2048
    # llama-cpp-python's server understands these beyond OpenAI's set, and not DRY or XTC.
    assert {"top_k", "min_p", "repetition_penalty", "grammar", "seed"} <= model.supported_params
    assert "dry_multiplier" not in model.supported_params
    # Token counts come from the engine's tokenizer, which is the model's own.
    assert model.encode(PROMPT) == hearth.models.current.model.encode(PROMPT)


def test_greedy_reply_equals_in_process_llama_cpp(remote, hearth, greedy):
    """Same model, same prompt, greedy: the engine's reply is the one llama.cpp in
    process gives, streamed one token per piece, with the same token counts."""
    expected, local = hearth.complete(PROMPT, greedy).result()
    job = remote.complete(PROMPT, greedy)
    pieces = [e.text for e in job.events() if isinstance(e, Delta)]
    text, stats = "".join(pieces), None
    assert text == expected
    assert len(pieces) > 5
    again, stats = remote.complete(PROMPT, greedy).result()
    assert again == expected
    assert stats.completion_tokens == local.completion_tokens
    assert stats.prompt_tokens == local.prompt_tokens
    assert stats.finish_reason == local.finish_reason


def test_parameters_are_mapped(remote):
    """max_new_tokens, stop and a grammar reach the engine under its own names."""
    text, stats = remote.complete(PROMPT, GenerationParams(temperature=0, max_new_tokens=3)).result()
    assert stats.completion_tokens == 3 and stats.finish_reason == "length"
    yes_no = GenerationParams(max_new_tokens=5, grammar='root ::= "yes" | "no"', temperature=1.0, seed=7)
    assert remote.complete("Is the sky blue?", yes_no).result()[0] in ("yes", "no")
    full, _ = remote.complete(PROMPT, GenerationParams(temperature=0, max_new_tokens=20)).result()
    stop = full.split()[2]
    cut, stats = remote.complete(PROMPT, GenerationParams(temperature=0, max_new_tokens=20,
                                                          stop=(stop,))).result()
    assert cut == full[: full.index(stop)] and stats.finish_reason == "stop"


def test_cancel_stops_the_engine_and_frees_it(remote):
    job = remote.complete("Once upon a time", GenerationParams(max_new_tokens=1500, ignore_eos=True,
                                                               temperature=1.0))
    events = job.events()
    for _ in range(3):
        assert isinstance(next(events), Delta)
    job.stop()
    stopped_at = time.monotonic()
    last = list(events)[-1]
    assert isinstance(last, Finished) and last.stats.finish_reason == "cancelled"
    assert time.monotonic() - stopped_at < 1.0
    # The engine dropped that reply: the next one starts at once.
    start = time.monotonic()
    quick = remote.complete("Hi", GenerationParams(max_new_tokens=2, temperature=0))
    first = next(quick.events())
    assert isinstance(first, (Delta, Finished))
    assert time.monotonic() - start < 2.0
    quick.result()


def test_the_api_serves_a_remote_model(remote, engine):
    """Hearth's own API in front of the engine: same answers, and a sampler the engine
    does not understand is named rather than silently dropped."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import install_api
    from webui.config import ServerSettings

    app = FastAPI()
    install_api(app, remote, ServerSettings())
    with TestClient(app) as client:
        models = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == [engine[1] + "/v1"]
        body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
        plain = client.post("/v1/completions", json=body)
        assert plain.status_code == 200 and "x-hearth-ignored-params" not in plain.headers
        expected = remote.complete(PROMPT, GenerationParams(temperature=0, max_new_tokens=8)).result()[0]
        assert plain.json()["choices"][0]["text"] == expected
        dry = client.post("/v1/completions", json={**body, "dry_multiplier": 0.8, "xtc_probability": 0.5})
        assert dry.status_code == 200
        assert dry.headers["x-hearth-ignored-params"] == "dry_multiplier,xtc_probability"
        info = client.get("/v1/internal/model/info").json()
        assert info["loader"] == "remote" and "dry_multiplier" not in info["supported_params"]


def test_the_engine_key_is_sent_but_never_shown(engine):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import install_api
    from webui.config import ServerSettings

    core = Hearth(models_dir=ROOT / "no-models-here")
    core.load_model(engine[1], "remote", {"remote_api_key": "s3cret-engine-key"})
    assert core.models.current.model._client.headers["authorization"] == "Bearer s3cret-engine-key"
    app = FastAPI()
    install_api(app, core, ServerSettings())
    with TestClient(app) as client:
        info = client.get("/v1/internal/model/info")
    assert info.json()["options"]["remote_api_key"] == "***"
    assert "s3cret" not in info.text
    core.unload_model()
    core.engine.close()


def test_a_wrong_model_name_lists_what_the_engine_offers(engine):
    core = Hearth(models_dir=ROOT / "no-models-here")
    with pytest.raises(LoadError) as caught:
        core.load_model(engine[1], "remote", {"remote_model": "gpt-17"})
    assert "no model 'gpt-17'" in str(caught.value) and ".gguf" in str(caught.value)
    core.engine.close()


def test_a_dead_port_is_one_clear_line_and_keeps_the_loaded_model(hearth):
    dead = f"http://127.0.0.1:{free_port()}"
    core = Hearth(models_dir=ROOT / "no-models-here")
    with pytest.raises(LoadError) as caught:
        core.load_model(dead, "remote")
    message = str(caught.value)
    assert message == f"cannot reach the engine at {dead}: connection refused"
    # Through the shared core: the model that was loaded stays loaded.
    before = hearth.models.current.name
    with pytest.raises(LoadError) as caught:
        hearth.load_model(dead)
    assert "cannot reach the engine" in str(caught.value) and "\n" not in str(caught.value)
    assert f"kept {before} loaded" in str(caught.value)
    assert hearth.models.current.name == before
    core.engine.close()


def test_a_json_schema_reply_through_the_engine_follows_the_schema(remote):
    """Official openai client -> Hearth's API -> remote loader -> llama_cpp.server: the
    schema reaches the engine (as the GBNF grammar its /v1/completions takes) and the
    reply is JSON that the schema accepts."""
    import json

    import jsonschema
    import openai
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import install_api
    from webui.config import ServerSettings

    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]},
                                               "count": {"type": "integer"}},
              "required": ["colour", "count"], "additionalProperties": False}
    app = FastAPI()
    install_api(app, remote, ServerSettings())
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)
        reply = client.chat.completions.create(
            model="remote", messages=[{"role": "user", "content": "Name a colour and a number."}],
            temperature=0, max_tokens=60,
            response_format={"type": "json_schema", "json_schema": {"name": "pick", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "pick", "strict": True, "schema": {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}


@pytest.mark.parametrize("dialect, sent", [
    ("vllm", {"response_format": SCHEMA_FORMAT}),
    ("llama.cpp", {"json_schema": SCHEMA_FORMAT["json_schema"]["schema"]}),
])
def test_response_format_goes_to_an_engine_that_takes_it(engine, dialect, sent):
    """vLLM's /v1/completions takes OpenAI's response_format and llama.cpp's server a
    json_schema: Hearth hands the request's format on as it came, with no grammar of its
    own. (The real server here is llama-cpp-python's; the dialect is set by hand, and
    the request body the engine would get is what is checked.)"""
    core = Hearth(models_dir=ROOT / "no-models-here")
    try:
        core.load_model(engine[1] + "/v1", options={"remote_context_length": 2048, "remote_dialect": dialect})
        job = core.chat([{"role": "user", "content": "A number?"}], GenerationParams(max_new_tokens=1, temperature=0),
                        response_format=SCHEMA_FORMAT)
        job.stop()
        assert job.params.grammar == ""
        body = core.models.current.model.request_body("p", job.params, 1)
        assert {k: body[k] for k in sent} == sent
        json_object = dataclasses.replace(job.params, response_format='{"type": "json_object"}')
        if dialect == "llama.cpp":
            assert core.models.current.model.request_body("p", json_object, 1)["json_schema"] == {"type": "object"}
    finally:
        core.unload_model()
        core.engine.close()


def test_an_engine_that_takes_no_response_format_refuses_it_in_one_line(engine):
    """Plain OpenAI's /v1/completions has no response_format and no grammar."""
    core = Hearth(models_dir=ROOT / "no-models-here")
    try:
        core.load_model(engine[1] + "/v1", options={"remote_context_length": 2048, "remote_dialect": "openai"})
        with pytest.raises(UserError) as refused:
            core.chat([{"role": "user", "content": "A number?"}], GenerationParams(max_new_tokens=1), response_format=SCHEMA_FORMAT)
        assert "response_format" in str(refused.value) and "\n" not in str(refused.value)
    finally:
        core.unload_model()
        core.engine.close()


def test_an_engine_that_dies_is_a_clear_error_not_a_hang(remote, engine):
    """Last: stops the engine this module shares."""
    proc, url = engine
    stop(proc)
    job = remote.complete(PROMPT, GenerationParams(max_new_tokens=5))
    done = threading.Event()
    outcome = {}

    def wait():
        try:
            job.result()
        except GenerationError as e:
            outcome["error"] = str(e)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    assert done.wait(15), "the job hung on a dead engine"
    assert outcome["error"] == f"cannot reach the engine at {url}: connection refused"
