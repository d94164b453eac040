"""Anthropic's Messages API (/v1/messages) through the official `anthropic` client, and
a reasoning model's thinking on both chat routes (reasoning_content on
/v1/chat/completions through the official `openai` client, thinking blocks on
/v1/messages), against one real Hearth server with the real SmolLM2 model. SmolLM2
does not think, so a GBNF grammar makes the real model write <think>...</think>
before its answer; the splitter must route what it wrote."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.support import running_server

KEY = "test-key-reasoning-0123"
# The model's words inside the markers are its own; only their shape is forced.
THINKING = 'root ::= "<think>" [a-z ]{4,12} "</think>" [A-Za-z ]{2,10}'
ASK = [{"role": "user", "content": "Say hi"}]
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
                            "required": ["city"]}}
CITY = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "1024", "--api-key", KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_thinking_comes_back_as_reasoning_content(client):
    reply = client.chat.completions.create(model="x", messages=ASK, temperature=0, max_tokens=24,
                                           extra_body={"grammar": THINKING})
    message = reply.choices[0].message
    assert message.reasoning_content and 4 <= len(message.reasoning_content) <= 12
    assert "<think>" not in message.content and "</think>" not in message.content
    assert message.content.strip() and message.content == message.content.lstrip()
    # Streamed: the same split, the thinking in deltas of its own, before the answer.
    chunks = list(client.chat.completions.create(model="x", messages=ASK, temperature=0, max_tokens=24,
                                                 stream=True, extra_body={"grammar": THINKING}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert (reasoning, content) == (message.reasoning_content, message.content)
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not getattr(d, "reasoning_content", None) for d in deltas[first_content:])


def test_a_reply_without_thinking_has_no_reasoning_content(client):
    reply = client.chat.completions.create(model="x", messages=ASK, temperature=0, max_tokens=5)
    assert getattr(reply.choices[0].message, "reasoning_content", None) is None
    assert reply.choices[0].message.content


def test_thinking_switch_and_earlier_thinking_are_accepted(client):
    """enable_thinking (top-level or llama-server/vLLM's chat_template_kwargs) reaches the
    template; an assistant turn sent back with its reasoning_content is taken."""
    history = [*ASK, {"role": "assistant", "content": "Hi!", "reasoning_content": "greet back"},
               {"role": "user", "content": "Again"}]
    for extra in ({"chat_template_kwargs": {"enable_thinking": False}}, {"enable_thinking": True}):
        reply = client.chat.completions.create(model="x", messages=history, temperature=0, max_tokens=2,
                                               extra_body=extra)
        assert reply.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="x", messages=ASK, max_tokens=2,
                                       extra_body={"chat_template_kwargs": {"thinking": True}})
    message = err.value.body["message"]
    assert "only enable_thinking is supported" in message and "\n" not in message


# --- Anthropic's Messages API, through the official `anthropic` client -------------
@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server, api_key=KEY, max_retries=0, timeout=60)


# Anthropic's SDK 2.x takes samplers only through extra_body (its newest models fix them);
# /v1/messages reads temperature, top_p and top_k in the body as the API always has.
GREEDY = {"temperature": 0}


def greedy_message(claude, **kwargs):
    extra = {**GREEDY, **kwargs.pop("extra_body", {})}
    return claude.messages.create(model="local", max_tokens=kwargs.pop("max_tokens", 8), extra_body=extra,
                                  messages=kwargs.pop("messages", ASK), **kwargs)


def test_messages_answer_in_anthropics_shape(claude, client):
    reply = greedy_message(claude, system="You are terse.")
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    [block] = reply.content
    assert block.type == "text" and block.text
    assert reply.stop_reason in ("end_turn", "max_tokens") and reply.usage.input_tokens > 0
    assert 0 < reply.usage.output_tokens <= 8
    # The same model and prompt through the OpenAI route say the same.
    same = client.chat.completions.create(model="x", temperature=0, max_tokens=8,
                                          messages=[{"role": "system", "content": "You are terse."}, *ASK])
    assert block.text == same.choices[0].message.content
    # A system prompt as text blocks, and user content as blocks, mean the same.
    blocks = greedy_message(claude, system=[{"type": "text", "text": "You are terse."}],
                            messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}])
    assert blocks.content[0].text == block.text


def test_messages_stream_event_by_event(claude):
    whole = greedy_message(claude, max_tokens=12)
    with claude.messages.stream(model="local", max_tokens=12, extra_body=GREEDY, messages=ASK) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens


def test_stop_sequences_end_the_reply_and_are_named(claude):
    whole = greedy_message(claude, max_tokens=12).content[0].text
    word = whole.split()[1]  # a word the greedy reply writes
    reply = greedy_message(claude, max_tokens=12, stop_sequences=["zzz-never", word])
    assert reply.stop_reason == "stop_sequence" and reply.stop_sequence == word
    assert reply.content[0].text == whole[:whole.index(word)]
    with claude.messages.stream(model="local", max_tokens=12, extra_body=GREEDY, messages=ASK,
                                stop_sequences=[word]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence, final.content[0].text) == ("stop_sequence", word, reply.content[0].text)


def test_thinking_leaves_as_thinking_blocks(claude):
    kwargs = {"max_tokens": 24, "extra_body": {**GREEDY, "grammar": THINKING},
              "thinking": {"type": "enabled", "budget_tokens": 1024}}
    reply = greedy_message(claude, **kwargs)
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking and "<think>" not in reply.content[1].text
    with claude.messages.stream(model="local", messages=ASK, **kwargs) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert deltas[0] == "thinking_delta" and deltas[-1] == "text_delta"
    assert [(b.type, getattr(b, "thinking", None) or b.text) for b in final.content] == \
        [("thinking", reply.content[0].thinking), ("text", reply.content[1].text)]


@pytest.mark.parametrize(("body", "says"), [
    ({"messages": ASK}, "max_tokens: Field required"),
    ({"messages": [], "max_tokens": 5}, "messages"),
    ({"messages": [{"role": "assistant", "content": "Hi"}, *ASK], "max_tokens": 5}, "first message must use the user role"),
    ({"messages": [{"role": "system", "content": "x"}], "max_tokens": 5}, "messages.0.role"),
    ({"messages": ASK, "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "server tools"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}],
      "max_tokens": 5}, "no earlier assistant message called"),
    ({"messages": ASK, "max_tokens": 5, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
     "not among the tools"),
])
def test_bad_requests_are_one_line_anthropic_errors(server, body, says):
    response = httpx.post(server + "/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=30)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert says in error["error"]["message"] and "\n" not in error["error"]["message"]


def test_the_anthropic_client_raises_on_a_bad_request_and_a_wrong_key(claude, server):
    with pytest.raises(anthropic.BadRequestError, match="first message must use the user role"):
        greedy_message(claude, messages=[{"role": "assistant", "content": "Hi"}])
    wrong = anthropic.Anthropic(base_url=server, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        greedy_message(wrong)



def test_a_forced_tool_call_is_a_tool_use_block(claude):
    """tool_choice tool forces a call with a grammar from input_schema: even SmolLM2 writes one."""
    kwargs = {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}, "max_tokens": 40}
    reply = greedy_message(claude, messages=CITY, **kwargs)
    assert reply.stop_reason == "tool_use"
    [call] = [b for b in reply.content if b.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input["city"], str) and call.id.startswith("toolu_")
    with claude.messages.stream(model="local", messages=CITY, extra_body=GREEDY, **kwargs) as stream:
        final = stream.get_final_message()
    [streamed] = [b for b in final.content if b.type == "tool_use"]
    assert (final.stop_reason, streamed.name, streamed.input) == ("tool_use", "get_weather", call.input)
    # The result goes back as a tool_result block; the model answers in text.
    history = [*CITY, {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name,
                                                          "input": call.input}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 C"}]}]
    after = greedy_message(claude, messages=history, tools=[WEATHER], tool_choice={"type": "none"}, max_tokens=4)
    assert after.stop_reason in ("end_turn", "max_tokens") and after.content[0].type == "text"
    assert after.content[0].text
