"""Lorebooks, the context budget and avatars in a real Chromium against a real server
(the built-in model): a character whose card carries a lorebook entry keyed "dragon";
after a message about dragons, the folded context view under the reply names the entry,
opening it shows the budget's parts, and the character's avatar is beside its reply."""
from __future__ import annotations

import pytest
import yaml

from webui.characters.cards import placeholder_png

BOOK = {"entries": [{"keys": ["dragon"], "content": "Dragons sleep under the Ash Hills.", "name": "Dragons",
                     "enabled": True, "insertion_order": 10, "extensions": {}}]}


@pytest.fixture(scope="module")
def server(hearth_server):
    lorekeeper = {"name": "Lorekeeper", "context": "Lorekeeper knows the old tales.",
                  "card": {"character_book": BOOK}}
    return hearth_server(
        presets={"short": "temperature: 0.0\nmax_new_tokens: 8\n"},
        settings={"preset": "short", "mode": "chat-instruct", "character": "Lorekeeper"},
        files={"characters/Lorekeeper.yaml": yaml.safe_dump(lorekeeper),
               "characters/Lorekeeper.png": placeholder_png(16, (20, 200, 90))})


def test_the_context_view_names_the_lorebook_entry_and_the_avatar_shows(open_page, server):
    page = open_page(server)
    page.fill("#chat-input textarea", "Tell me about the dragons.")
    page.click("#chat-send")
    # The view appears once the reply is done: its title names the entry inserted.
    page.wait_for_function("() => document.querySelector('#chat').innerText.includes('lorebook: Dragons')",
                           timeout=90_000)
    page.get_by_text("lorebook: Dragons").first.click()  # unfold it
    page.wait_for_function("() => ['Room left for the reply', 'Lorebook', 'History kept']"
                           ".every(s => document.querySelector('#chat').innerText.includes(s))")
    # The avatar: a copy of Lorekeeper.png, served by Gradio, decoded by the browser.
    page.wait_for_function("() => [...document.querySelectorAll('#chat .avatar-container img')]"
                           ".some(i => i.complete && i.naturalWidth === 16)")
