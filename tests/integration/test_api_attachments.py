"""OpenAI's file content parts on /v1/chat/completions, through the official `openai`
client against the session's real model (in-process, no server of its own): a file's
text reaches the prompt (the prompt grows by at least its tokens), a PDF is read, and
a binary file, bad base64 or file_id are one-line 400s with nothing generated."""
from __future__ import annotations

import base64

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fixtures.pdf import make_pdf
from webui.api import install_api
from webui.config import ServerSettings

NOTE = "The blue door code is 4172. " * 20


@pytest.fixture(scope="module")
def client(hearth):
    app = FastAPI()
    install_api(app, hearth, ServerSettings())
    with TestClient(app) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)


def file_part(name: str, data: bytes, media: str = "text/plain") -> dict:
    url = f"data:{media};base64,{base64.b64encode(data).decode()}"
    return {"type": "file", "file": {"filename": name, "file_data": url}}


def ask(client, content) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="x", messages=[{"role": "user", "content": content}],
                                          max_tokens=1, temperature=0)


def test_a_files_text_reaches_the_prompt(client, hearth):
    question = {"type": "text", "text": "What is the door code?"}
    # Without a file the prompt is the template around the question: about 35 tokens.
    least = hearth.count_tokens(NOTE) + hearth.count_tokens(question["text"])
    with_note = ask(client, [file_part("notes.md", NOTE.encode()), question]).usage.prompt_tokens
    assert with_note >= least  # the note, fenced after the line before it, then the question
    pdf = ask(client, [file_part("r.pdf", make_pdf([[NOTE.strip()]]), "application/pdf"), question])
    assert pdf.usage.prompt_tokens >= least - 2  # the PDF's text, without the trailing space


@pytest.mark.parametrize("part, message", [
    (file_part("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00"), "photo.png looks like a binary file, not text"),
    ({"type": "file", "file": {"filename": "a.txt", "file_data": "data:text/plain;base64,@@@"}},
     "messages[0].content[0]: file_data is not valid base64"),
    ({"type": "file", "file": {"file_id": "file-123"}}, "file_id is not supported"),
])
def test_a_file_that_cannot_be_read_is_a_one_line_400(client, part, message):
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, [part, {"type": "text", "text": "hi"}])
    text = info.value.body["message"]
    assert message in text and "\n" not in text
