"""Lorebooks, the context budget and avatars in a real Chromium against a real server
(the built-in model): a character whose card carries a lorebook entry keyed "dragon";
after a message about dragons, the folded context view under the reply names the entry,
opening it shows the budget's parts, and the character's avatar is beside its reply."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import running_server
from webui.characters.cards import placeholder_png

BOOK = {"entries": [{"keys": ["dragon"], "content": "Dragons sleep under the Ash Hills.", "name": "Dragons",
                     "enabled": True, "insertion_order": 10, "extensions": {}}]}


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user_data")
    (folder / "presets").mkdir()
    (folder / "presets" / "short.yaml").write_text("temperature: 0.0\nmax_new_tokens: 8\n")
    (folder / "characters").mkdir()
    (folder / "characters" / "Lorekeeper.yaml").write_text(yaml.safe_dump(
        {"name": "Lorekeeper", "context": "Lorekeeper knows the old tales.", "card": {"character_book": BOOK}}))
    (folder / "characters" / "Lorekeeper.png").write_bytes(placeholder_png(16, (20, 200, 90)))
    (folder / "settings.yaml").write_text("preset: short\nmode: chat-instruct\ncharacter: Lorekeeper\n")
    return folder


@pytest.fixture(scope="module")
def server(user_data):
    with running_server("--n-ctx", "2048", env={"HEARTH_USER_DATA": str(user_data)}) as url:
        yield url


def test_the_context_view_names_the_lorebook_entry_and_the_avatar_shows(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(server)
        page.wait_for_selector("#chat-input textarea")
        page.wait_for_function("() => document.querySelector('#chat-character input')?.value === 'Lorekeeper'")
        page.get_by_role("tab", name="Parameters").click()
        page.wait_for_function("() => document.querySelector('#preset-choice input')?.value === 'short'")
        page.get_by_role("tab", name="Chat").click()
        page.wait_for_function("() => document.querySelector('#chat-mode input:checked')?.value === 'chat-instruct'")
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
    finally:
        context.close()
