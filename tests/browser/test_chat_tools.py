"""A tool call in a real Chromium: the user's own tool (not marked safe) switched on for
the chat and forced as the first round's tool choice (SmolLM2-135M rarely picks a tool
itself); its call is shown waiting for approval, Approve runs it, its result shows in
the chat, and the model's reply comes after it."""
from __future__ import annotations

import json

import pytest

from tests.browser.conftest import BOT, STATUS_HAS
from tests.support import ARTIFACTS

TOOL = '''def secret_word() -> str:
    """The secret word of the day."""
    return "The secret word is PAPAYA."
'''


@pytest.fixture(scope="module")
def server(hearth_server):
    return hearth_server(presets={"tools": "temperature: 0.0\nmax_new_tokens: 40\n"},
                         settings={"preset": "tools", "mode": "instruct"},
                         files={"tools/secret_word.py": TOOL, "tools/broken.py": "import no_such_module\n"})


def test_a_tool_call_is_shown_approved_and_its_result_used(open_page, server):
    page = open_page(server)
    page.locator("#chat-tools-panel").get_by_text("Tools", exact=True).first.click()
    page.locator("#chat-tools").get_by_label("secret_word", exact=False).check()
    # A file that fails to import is one line in the panel; the others load.
    notices = page.locator("#chat-tools-notices").inner_text()
    assert "broken.py failed to import: ModuleNotFoundError" in notices
    page.click("#chat-tool-choice input")
    page.get_by_role("option", name="secret_word", exact=True).click()
    page.fill("#chat-input textarea", "What is the secret word?")
    page.click("#chat-send")
    page.wait_for_function(STATUS_HAS, arg="asks to run")
    assert "waiting for your approval" in page.locator("#chat").inner_text()
    page.click("#chat-tool-approve")
    page.wait_for_function(STATUS_HAS, arg="Done")
    chat = page.locator("#chat")
    title = chat.locator(".thought-group .title").first
    assert "secret_word" in title.inner_text() and " s" in title.inner_text()
    title.click()  # unfold the call: its result
    chat.locator(".thought-group").first.get_by_text("The secret word is PAPAYA.").wait_for(state="visible")
    reply = page.locator(BOT).last.inner_text().strip()
    assert "Done · 1 tool call" in page.locator("#chat-status").inner_text()
    assert "PAPAYA" in reply  # greedy: the built-in model repeats the result it was given
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-tools.png"), full_page=True)
    saved = json.loads(next((server.user_data / "histories").rglob("*.json")).read_text())
    last = saved["messages"][-1]
    assert last["tool_events"][0]["result"] == "The secret word is PAPAYA."
    assert last["tool_events"][0]["status"] == "done" and last["content"]
