"""Tool calling and structured output through the official `openai` client and the
`openai-agents` SDK, against a real Hearth server with the built-in SmolLM2 model on
llama.cpp. The tool choice is forced where a call is asserted: what is tested is that
the grammar makes even a 135M model write a valid call, not which tool it picks."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support import run_on_own_loop, running_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                   "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                   "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 2 days?"}]
GREEDY = {"temperature": 0, "seed": 1, "max_tokens": 40}


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "2048") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=60)


def _check_weather_args(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"city", "days"} and isinstance(args["city"], str) and len(args["city"]) <= 20
    assert isinstance(args["days"], int) and 1 <= args["days"] <= 7
    return args


def test_named_tool_choice_gives_a_valid_call(client):
    reply = client.chat.completions.create(model="x", messages=ASK, tools=[WEATHER, TIME], **GREEDY,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    _check_weather_args(call.function.arguments)


def test_required_streams_tool_call_deltas(client):
    chunks = list(client.chat.completions.create(model="x", messages=ASK, tools=[TIME], tool_choice="required",
                                                 stream=True, **GREEDY))
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or []) if c.choices]
    assert [d.function.name for d in deltas if d.function.name] == ["get_time"]
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments)["zone"] in ("UTC", "CET")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_auto_leaves_the_choice_to_the_model(client):
    """Whatever the model writes comes back as text or as checked calls."""
    reply = client.chat.completions.create(model="x", messages=ASK, tools=[WEATHER], tool_choice="auto",
                                           parallel_tool_calls=False, **{**GREEDY, "max_tokens": 12})
    choice = reply.choices[0]
    if choice.finish_reason == "tool_calls":
        assert len(choice.message.tool_calls) == 1
        _check_weather_args(choice.message.tool_calls[0].function.arguments)
    else:
        assert choice.message.content and not choice.message.tool_calls


# The built-in model begins a <tool_call> here and, left free, writes the tool's own
# description as its arguments (invalid JSON at character 117); the text-or-call grammar
# (--tool-grammar auto, the default) holds it to the schema once the call has begun.
CALL_ME = [{"role": "user", "content": "Reply with a <tool_call> for get_weather: the weather in Paris for 2 days."}]


@pytest.mark.parametrize("stream", [False, True])
def test_auto_forces_valid_arguments_once_a_call_begins(client, stream):
    reply = client.chat.completions.create(model="x", messages=CALL_ME, tools=[WEATHER], tool_choice="auto",
                                           stream=stream, **{**GREEDY, "max_tokens": 60})
    if stream:
        chunks = [c for c in reply if c.choices]
        deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
        assert [d.function.name for d in deltas if d.function.name] == ["get_weather"]
        arguments, finish = "".join(d.function.arguments or "" for d in deltas), chunks[-1].choices[0].finish_reason
    else:
        [call] = reply.choices[0].message.tool_calls
        assert call.function.name == "get_weather"
        arguments, finish = call.function.arguments, reply.choices[0].finish_reason
    assert finish == "tool_calls"
    assert _check_weather_args(arguments)["city"] == "Paris"


def test_auto_leaves_plain_text_free(client):
    reply = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Write a short poem about the sea."}], tools=[WEATHER],
        tool_choice="auto", **{**GREEDY, "max_tokens": 24})
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and not choice.message.tool_calls
    assert "sea" in choice.message.content.lower()


@pytest.mark.parametrize("stream", [False, True])
def test_a_text_reply_with_tools_keeps_its_logprobs(client, stream):
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Say hello."}],
                                           tools=[WEATHER], logprobs=True, top_logprobs=2, stream=stream,
                                           **{**GREEDY, "max_tokens": 4})
    if stream:
        chunks = [c.choices[0] for c in reply if c.choices]
        text = "".join(c.delta.content or "" for c in chunks)
        tokens = [t for c in chunks if c.logprobs for t in c.logprobs.content]
    else:
        text, tokens = reply.choices[0].message.content, reply.choices[0].logprobs.content
    assert text and "".join(t.token for t in tokens) == text
    assert all(len(t.top_logprobs) == 2 for t in tokens)


def test_tool_results_go_back_through_the_template(client):
    """A whole round: the call, its result as a `tool` message, then the model's answer."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"}]
    reply = client.chat.completions.create(model="x", messages=messages, tools=[WEATHER], tool_choice="none",
                                           **{**GREEDY, "max_tokens": 8})
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls


def test_response_format_json_schema(client):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Invent a person."}], **GREEDY,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
    value = json.loads(reply.choices[0].message.content)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)


@pytest.mark.parametrize(("extra", "words"), [
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "wrong"}}}]},
     "not valid JSON Schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not among the tools"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}},
     "not valid JSON Schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}}}},
     "cannot be turned into a grammar"),
    ({"messages": [*ASK, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]}, "tool_call_id"),
])
def test_bad_tool_input_is_one_line_400(server, extra, words):
    body = {"messages": ASK, "max_tokens": 5, **extra}
    r = httpx.post(server + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert words in message and "\n" not in message


def test_server_goes_on_after_bad_input(client):
    assert client.chat.completions.create(model="x", messages=ASK, max_tokens=1).choices


def test_agents_sdk_runs_a_tool_loop(server):
    """openai-agents drives the loop: forced call, Hearth's tool result, final answer."""
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    seen = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    model = agents.OpenAIChatCompletionsModel(
        model="hearth", openai_client=openai.AsyncOpenAI(base_url=server + "/v1", api_key="none", max_retries=0))
    agent = agents.Agent(name="weather", instructions="Answer with the tool's result.", model=model,
                         tools=[get_weather],
                         model_settings=agents.ModelSettings(tool_choice="get_weather", temperature=0,
                                                             max_tokens=40),
                         reset_tool_choice=True)
    result = run_on_own_loop(agents.Runner.run(agent, "Weather in Paris?", max_turns=3))
    assert len(seen) == 1 and isinstance(seen[0], str)
    assert isinstance(result.final_output, str) and result.final_output
