"""Reply versions (swipes), the reply's record, Impersonate and Branch in a real Chromium
against a real server (the built-in model, greedy), with its own user data folder so
the chat files can be checked."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import STATUS_HAS, USER, send
from tests.support import eventually

# The row's own text: the block's innerText also holds Gradio's hidden progress timer
# ("0.1s"), seen left there long after the row showed its new value.
VERSION_IS = "s => document.querySelector('#chat-version [data-testid=markdown]')?.innerText.trim() === s"


@pytest.fixture(scope="module")
def server(hearth_server):
    return hearth_server(presets={"short": "temperature: 0.0\nseed: 7\nmax_new_tokens: 12\n"},
                         settings={"preset": "short", "mode": "instruct"})


def chat_files(user_data: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (user_data / "histories").glob("*/*.json")}


def test_swipes_details_impersonate_and_branch(open_page, server):
    page = open_page(server, viewport={"width": 1200, "height": 1000})
    send(page, "Name a colour.")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    page.wait_for_function(VERSION_IS, arg="Reply 1 / 1")

    # Regenerate keeps the first version; the arrows switch, and the file follows.
    page.click("#chat-regenerate")
    page.wait_for_function(VERSION_IS, arg="Reply 2 / 2")
    page.click("#chat-version-prev")
    page.wait_for_function(VERSION_IS, arg="Reply 1 / 2")
    page.wait_for_function(STATUS_HAS, arg="version 1 of 2")

    # The file is written when the switch is handled; poll it rather than read it once.
    def switched_back():
        (saved,) = chat_files(server.user_data).values()
        reply = saved["messages"][-1]
        return reply.get("version") == 0 and len(reply.get("versions", [])) == 2 and reply

    reply = eventually(switched_back, 15, what="the chosen version to be saved")
    (saved,) = chat_files(server.user_data).values()
    page.wait_for_function("t => document.querySelector('#chat').innerText.includes(t)", arg=reply["content"])

    # The reply's record: model, loader, the seed used.
    page.get_by_text("Reply details").click()
    page.wait_for_function("() => document.querySelector('#chat-reply-info')?.innerText.includes('Seed 7')")
    info = page.inner_text("#chat-reply-info")
    assert "llama.cpp" in info and "llama_cpp_python" in info and "hash" in info

    # Impersonate writes the next user message into the box, not into the chat.
    page.click("#chat-impersonate")
    page.wait_for_function(STATUS_HAS, arg="written by the model")
    assert page.input_value("#chat-input textarea").strip()
    assert page.locator(USER).count() == 1

    # Branch from the first message: a new chat with just it, marked as a branch.
    page.locator(USER).first.click()
    page.wait_for_function(STATUS_HAS, arg="Message 1 selected")
    page.click("#chat-branch")
    page.wait_for_function(STATUS_HAS, arg="branched from “Name a colour.” at message 1.")
    page.wait_for_function("() => document.querySelectorAll(\"#chat [data-testid='bot']\").length === 0")
    assert page.locator(USER).count() == 1
    files = chat_files(server.user_data)
    assert len(files) == 2
    (branch,) = [f for f in files.values() if f.get("branched_from")]
    assert branch["branched_from"]["id"] == saved["id"]
    assert [m["content"] for m in branch["messages"]] == ["Name a colour."]
    page.click("#chat-past input")
    assert page.locator("[role=option]", has_text="⑂ from").count() == 1
