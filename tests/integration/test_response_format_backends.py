"""response_format on /v1/completions (not only chat) for every kind of backend, through
the official openai client and Hearth's API: llama.cpp's own llama-server gets the
schema as its `json_schema` and answers JSON that matches it; a vLLM-dialect engine gets
OpenAI's `response_format` as it came; plain OpenAI and Transformers refuse it in one line.
The text-or-call grammar of tool_choice auto steps aside where no grammar applies."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from loaders.params import GenerationParams
from tests import model_factory
from tests.support import ROOT
from webui.api import install_api
from webui.chat.structured import with_response_format
from webui.chat.tools import check_tool_request
from webui.config import ServerSettings
from webui.hearth import Hearth

SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]},
                                           "count": {"type": "integer"}},
          "required": ["colour", "count"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "pick", "schema": SCHEMA, "strict": True}}
PROMPT = "A colour and a number as JSON:"


@contextmanager
def api_client(core: Hearth) -> Iterator[openai.OpenAI]:
    app = FastAPI()
    install_api(app, core, ServerSettings())
    with TestClient(app) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)


@contextmanager
def hearth_on(url: str, **options) -> Iterator[Hearth]:
    core = Hearth(models_dir=ROOT / "no-models-here")
    try:
        core.load_model(url, options=options)
        yield core
    finally:
        core.unload_model()
        core.engine.close()


def test_llama_server_gets_the_schema_and_answers_json_that_matches_it(llama_server):
    with hearth_on(llama_server) as core, api_client(core) as client:
        model = core.models.current.model
        as_sent = with_response_format(GenerationParams(), FORMAT, model)
        assert as_sent.grammar == "" and model.request_body("p", as_sent, 1)["json_schema"] == SCHEMA
        reply = client.completions.create(model="remote", prompt=PROMPT, max_tokens=40, temperature=0,
                                          extra_body={"response_format": FORMAT})
    jsonschema.validate(json.loads(reply.choices[0].text), SCHEMA)


class StandIn(BaseHTTPRequestHandler):
    """Stands in for a vLLM or plain OpenAI engine, which cannot run here: lists one
    model, records each /v1/completions body and streams one fixed reply."""
    bodies: list[dict] = []
    REPLY = '{"colour": "red", "count": 3}'

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/v1/completions":
            self._send(404, {"error": {"message": "not found"}})
            return
        StandIn.bodies.append(body)
        chunks = [{"choices": [{"index": 0, "text": self.REPLY, "finish_reason": None}]},
                  {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}]
        data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        self._send(200, data.encode(), "text/event-stream")

    def _send(self, status: int, payload, kind: str = "application/json"):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_vllm_engine_gets_response_format_as_it_came(stand_in):
    with hearth_on(stand_in, remote_dialect="vllm", remote_context_length=2048) as core, api_client(core) as client:
        StandIn.bodies.clear()
        reply = client.completions.create(model="remote", prompt=PROMPT, max_tokens=40, temperature=0,
                                          extra_body={"response_format": FORMAT})
    assert reply.choices[0].text == StandIn.REPLY
    [body] = StandIn.bodies
    assert body["response_format"] == FORMAT and "grammar" not in body and "json_schema" not in body


def test_plain_openai_refuses_response_format_in_one_line_and_auto_tools_still_work(stand_in):
    with hearth_on(stand_in, remote_dialect="openai", remote_context_length=2048) as core, api_client(core) as client:
        StandIn.bodies.clear()
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model="remote", prompt=PROMPT, max_tokens=4,
                                      extra_body={"response_format": FORMAT})
        message = refused.value.body["message"]
        assert "response_format needs a grammar" in message and "\n" not in message
        assert StandIn.bodies == []
        # No grammar here: tool_choice auto is checked, not constrained, and not refused.
        reply = client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "Hi"}],
                                               tools=[{"type": "function", "function": {"name": "f"}}],
                                               tool_choice="auto", max_tokens=4)
        assert reply.choices[0].message.content == StandIn.REPLY and "grammar" not in StandIn.bodies[-1]


def test_transformers_refuses_response_format_in_one_line(default_model):
    core = Hearth(models_dir=ROOT / "no-models-here")
    try:
        core.load_model(str(model_factory.ensure_fp32()), "Transformers",
                        {"dtype": "float32", "device": "cpu", "cpu_threads": 1})
        with api_client(core) as client:
            for create in (lambda: client.completions.create(model="x", prompt=PROMPT, max_tokens=2,
                                                             extra_body={"response_format": FORMAT}),
                           lambda: client.chat.completions.create(model="x", max_tokens=2, response_format=FORMAT,
                                                                  messages=[{"role": "user", "content": "Hi"}])):
                with pytest.raises(openai.BadRequestError) as refused:
                    create()
                message = refused.value.body["message"]
                assert "response_format needs a grammar" in message and "\n" not in message
        ask = [{"role": "user", "content": "Hi"}]
        job = core.chat(ask, GenerationParams(max_new_tokens=2, temperature=0),
                        tools=check_tool_request([{"type": "function", "function": {"name": "f"}}], "auto", None, ask))
        assert job.params.grammar == "" and job.tool_plan.text_or_call_grammar
        job.result()
    finally:
        core.unload_model()
        core.engine.close()
