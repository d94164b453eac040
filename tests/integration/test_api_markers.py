"""No chat reply from /v1/chat/completions ends in a template marker, and /v1/completions
takes response_format, through the official `openai` client against a real Hearth server
with the built-in SmolLM2 model.

SmolLM2 ends its turns with <|im_end|> as one special token, so to make it write the
marker as text (as a model not trained on its template does) a GBNF grammar forces
"Yes <|im_end|>" as plain-text tokens; max_tokens then cuts the reply inside it."""
from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.support import running_server

ASK = [{"role": "user", "content": "Say yes."}]
FORCE_MARKER = {"grammar": 'root ::= "Yes <|im_end|>"'}


@pytest.fixture(scope="module")
def client():
    with running_server("--n-ctx", "2048") as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)


def reply(client, max_tokens: int, stream: bool) -> str:
    kwargs = dict(model="hearth", messages=ASK, temperature=0, max_tokens=max_tokens, extra_body=FORCE_MARKER)
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = client.chat.completions.create(**kwargs, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_reply_cut_inside_the_end_of_turn_marker_does_not_end_with_its_start(client, stream):
    assert reply(client, 20, stream) == "Yes "  # the whole marker: a stop string ends the reply
    for cut in (4, 6, 8):  # 4 tokens are "Yes <|" as generated, 8 reach into "im_end"
        text = reply(client, cut, stream)
        assert text.startswith("Yes") and "<|" not in text, (cut, text)


SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
          "required": ["city"], "additionalProperties": False}


def test_completions_follow_response_format_and_refuse_a_bad_one_in_one_line(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
    out = client.completions.create(model="hearth", prompt="The capital of France as JSON:\n", max_tokens=30,
                                    temperature=0, extra_body={"response_format": fmt})
    jsonschema.validate(json.loads(out.choices[0].text), SCHEMA)
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="hearth", prompt="Hi", max_tokens=4,
                                  extra_body={"response_format": {"type": "json_schema", "json_schema": {}}})
    assert "json_schema" in bad.value.message and "\n" not in bad.value.message
