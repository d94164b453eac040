"""A reasoning model's thinking in a real Chromium: a folded Thinking block above the
reply, not in the reply's text. SmolLM2 does not think, so the server starts with a
preset whose GBNF grammar makes the real model write <think>...</think> first."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import ARTIFACTS, running_server

BOT = "#chat [data-testid='bot']"
THINKING = 'root ::= "<think>" [a-z ]{4,12} "</think>" [A-Za-z ]{2,10}'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("user_data")
    (folder / "presets").mkdir()
    (folder / "presets" / "think.yaml").write_text(
        f"temperature: 0.0\nmax_new_tokens: 24\ngrammar: '{THINKING}'\n")
    (folder / "settings.yaml").write_text("preset: think\nmode: instruct\n")
    with running_server("--n-ctx", "1024", env={"HEARTH_USER_DATA": str(folder)}) as url:
        yield url


def test_thinking_is_a_folded_block_above_the_reply(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(server)
        page.wait_for_selector("#chat-input textarea")
        page.get_by_role("tab", name="Parameters").click()  # the saved preset fills the controls
        page.wait_for_function("() => document.querySelector('#preset-choice input')?.value === 'think'")
        page.get_by_role("tab", name="Chat").click()
        page.fill("#chat-input textarea", "Say hi")
        page.click("#chat-send")
        page.wait_for_function("() => document.querySelector('#chat-status').innerText.includes('tok/s')")
        group = page.locator("#chat .thought-group").first
        # Open while it streams, folded once the reply is done (only its title shows);
        # the status line and the last chat update may reach the page in either order.
        page.wait_for_function(
            "() => document.querySelector('#chat .thought-group')?.innerText.trim() === 'Thinking'")
        group.locator(".title").click()
        page.wait_for_function("() => document.querySelector('#chat .thought-group').innerText.trim() !== 'Thinking'")
        thought = group.inner_text().replace("Thinking", "", 1).strip()
        reply = page.locator(BOT).last.inner_text().strip()
        group.get_by_text(thought).wait_for(state="visible")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chat-thinking.png"), full_page=True)
        assert thought and reply and thought not in reply
        assert "<think>" not in page.locator("#chat").inner_text() and "</think>" not in reply
    finally:
        context.close()
