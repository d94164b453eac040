"""Attachments and math in a real Chromium against a real server (the built-in model,
greedy): a text file attached, a binary one refused in one line, a long paste kept
as pasted.txt, the message sent; the chat shows the files as folded blocks and the
saved chat keeps their text (the prompt's fencing is tested on the model in
tests/integration/test_chat_attachments.py); a formula renders with KaTeX while
"$5 and $10" stays text; Remove last gives the files back with the text."""
from __future__ import annotations

import json

import pytest

from tests.browser.conftest import STATUS_HAS, USER, send

CHIPS_HAS = "s => document.querySelector('#chat-attachments').innerText.includes(s)"


@pytest.fixture(scope="module")
def server(hearth_server):
    return hearth_server(presets={"short": "temperature: 0.0\nmax_new_tokens: 8\n"},
                         settings={"preset": "short", "mode": "instruct", "character": "Ember",
                                   "paste_attachment_chars": 300})


def attach(page, path):
    with page.expect_file_chooser() as chooser:
        page.click("#chat-attach")
    chooser.value.set_files(str(path))


def test_attach_paste_send_and_math(open_page, server, tmp_path):
    page = open_page(server, permissions=["clipboard-read", "clipboard-write"])
    page.wait_for_function("() => document.querySelector('#chat-paste-limit input')?.value === '300'")

    notes = tmp_path / "notes.txt"
    notes.write_text("The blue door code is 4172.\n")
    attach(page, notes)
    page.wait_for_function(CHIPS_HAS, arg="📎 notes.txt · 28 B · text")

    blob = tmp_path / "photo.png"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    attach(page, blob)
    page.wait_for_function(STATUS_HAS, arg="photo.png looks like a binary file, not text")
    assert "photo.png" not in page.inner_text("#chat-attachments")

    long_paste = "Shopping list: " + "apples, " * 60
    page.fill("#chat-input textarea", "What is the door code? ")
    page.evaluate("t => navigator.clipboard.writeText(t)", long_paste)
    page.press("#chat-input textarea", "Control+V")
    page.wait_for_function(CHIPS_HAS, arg="📎 pasted.txt")
    page.wait_for_function(STATUS_HAS, arg="attached as pasted.txt")
    assert page.input_value("#chat-input textarea") == "What is the door code? "  # the box kept its text

    send(page, "What is the door code? \\(x^2\\) costs $5 and $10")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    page.wait_for_function("() => !document.querySelector('#chat-attachments').innerText.includes('📎')")

    user = page.locator(USER)
    shown = page.inner_text("#chat")
    assert "📎 notes.txt · 28 B · text" in shown and "📎 pasted.txt" in shown
    assert shown.count("apples") < 60  # a folded block with the start of the text, not the dump
    # Math: the formula renders with KaTeX, the prices stay text.
    page.wait_for_function("() => document.querySelector(\"#chat [data-testid='user'] .katex\")")
    assert "$5 and $10" in user.last.inner_text()

    (chat,) = [json.loads(p.read_text()) for p in (server.user_data / "histories").glob("*/*.json")]
    message = next(m for m in chat["messages"] if m["role"] == "user")
    assert message["content"] == "What is the door code? \\(x^2\\) costs $5 and $10"
    assert [(a["name"], a["kind"], a["size"]) for a in message["attachments"]] == [
        ("notes.txt", "text", 28), ("pasted.txt", "text", len(long_paste))]
    assert message["attachments"][0]["text"] == "The blue door code is 4172.\n"

    # Remove last gives the text back to the box and the files back to the waiting list.
    page.click("#chat-remove-last")
    page.wait_for_function(CHIPS_HAS, arg="📎 pasted.txt")
    assert "📎 notes.txt" in page.inner_text("#chat-attachments")
    assert page.input_value("#chat-input textarea") == message["content"]
