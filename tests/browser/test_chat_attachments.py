"""Attachments and math in a real Chromium against a real server (the built-in model,
greedy): a text file attached, a binary one refused in one line, a long paste kept
as pasted.txt, the message sent; the chat shows the files as folded blocks and the
saved chat keeps their text (the prompt's fencing is tested on the model in
tests/integration/test_chat_attachments.py); a formula renders with KaTeX while
"$5 and $10" stays text; Remove last gives the files back with the text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import running_server

STATUS_HAS = "s => document.querySelector('#chat-status').innerText.includes(s)"
CHIPS_HAS = "s => document.querySelector('#chat-attachments').innerText.includes(s)"
PASTE = """(text) => {
  const box = document.querySelector('#chat-input textarea');
  const data = new DataTransfer();
  data.setData('text/plain', text);
  box.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
}"""


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user_data")
    (folder / "presets").mkdir()
    (folder / "presets" / "short.yaml").write_text("temperature: 0.0\nmax_new_tokens: 8\n")
    (folder / "settings.yaml").write_text("preset: short\nmode: instruct\ncharacter: Ember\n"
                                          "paste_attachment_chars: 300\n")
    return folder


@pytest.fixture(scope="module")
def server(user_data):
    with running_server("--n-ctx", "2048", env={"HEARTH_USER_DATA": str(user_data)}) as url:
        yield url


def attach(page, path):
    with page.expect_file_chooser() as chooser:
        page.click("#chat-attach")
    chooser.value.set_files(str(path))


def test_attach_paste_send_and_math(browser, server, user_data, tmp_path):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(server)
        page.wait_for_selector("#chat-input textarea")
        # The greedy preset is applied once the page-load events ran (see test_chat_features).
        page.get_by_role("tab", name="Parameters").click()
        page.wait_for_function("() => document.querySelector('#preset-choice input')?.value === 'short'")
        page.get_by_role("tab", name="Chat").click()
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

        page.fill("#chat-input textarea", "What is the door code? \\(x^2\\) costs $5 and $10")
        page.press("#chat-input textarea", "Enter")
        page.wait_for_function(STATUS_HAS, arg="tok/s")
        page.wait_for_function("() => !document.querySelector('#chat-attachments').innerText.includes('📎')")

        user = page.locator("#chat [data-testid='user']")
        shown = page.inner_text("#chat")
        assert "📎 notes.txt · 28 B · text" in shown and "📎 pasted.txt" in shown
        assert shown.count("apples") < 60  # a folded block with the start of the text, not the dump
        # Math: the formula renders with KaTeX, the prices stay text.
        page.wait_for_function("() => document.querySelector(\"#chat [data-testid='user'] .katex\")")
        assert "$5 and $10" in user.last.inner_text()

        (chat,) = [json.loads(p.read_text()) for p in (user_data / "histories").glob("*/*.json")]
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
    finally:
        context.close()
