"""No chat reply from /v1/chat/completions ends in a template marker, through the official
`openai` client against a real Hearth server with the built-in SmolLM2 model.

SmolLM2 ends its turns with <|im_end|> as one special token, so to make it write the
marker as text (as a model not trained on its template does) a GBNF grammar forces
"Yes <|im_end|>" as plain-text tokens; max_tokens then cuts the reply inside it."""
from __future__ import annotations

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
