"""A reasoning model's thinking in a real Chromium: a folded Thinking block above the
reply, not in the reply's text. SmolLM2 does not think, so the server starts with a
preset whose GBNF grammar makes the real model write <think>...</think> first."""
from __future__ import annotations

import pytest

from tests.browser.conftest import BOT, STATUS_HAS
from tests.support import ARTIFACTS

THINKING = 'root ::= "<think>" [a-z ]{4,12} "</think>" [A-Za-z ]{2,10}'


@pytest.fixture(scope="module")
def server(hearth_server):
    return hearth_server(presets={"think": f"temperature: 0.0\nmax_new_tokens: 24\ngrammar: '{THINKING}'\n"},
                         settings={"preset": "think", "mode": "instruct"}, n_ctx=1024)


def test_thinking_is_a_folded_block_above_the_reply(open_page, server):
    page = open_page(server)
    page.fill("#chat-input textarea", "Say hi")
    page.click("#chat-send")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    group = page.locator("#chat .thought-group").first
    # Open while it streams, folded once the reply is done (only its title shows);
    # the status line and the last chat update may reach the page in either order.
    page.wait_for_function("() => document.querySelector('#chat .thought-group')?.innerText.trim() === 'Thinking'")
    group.locator(".title").click()
    page.wait_for_function("() => document.querySelector('#chat .thought-group').innerText.trim() !== 'Thinking'")
    thought = group.inner_text().replace("Thinking", "", 1).strip()
    reply = page.locator(BOT).last.inner_text().strip()
    group.get_by_text(thought).wait_for(state="visible")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-thinking.png"), full_page=True)
    assert thought and reply and thought not in reply
    assert "<think>" not in page.locator("#chat").inner_text() and "</think>" not in reply
