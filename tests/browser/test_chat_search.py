"""Search across chats, export and import in a real Chromium against a real server: a
word from the text of a saved chat finds it and opens it; its export downloads as
Hearth JSON; a SillyTavern file imports and opens. The chats are written beforehand
through the real HistoryStore, so no reply has to be generated."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import BOT, STATUS_HAS
from tests.support import ROOT
from webui.chat.histories import HistoryStore


@pytest.fixture(scope="module")
def server(hearth_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_data")
    store = HistoryStore(folder / "histories")
    for texts in (["How do tides work?", "The moon pulls the oceans."],
                  ["Tell me about lighthouses", "The keeper trims the wick so the lamp never smokes."]):
        h = store.new("Ember", "chat")
        h.messages += [{"role": "user", "content": texts[0]}, {"role": "assistant", "content": texts[1]}]
        store.save(h)
    return hearth_server(user_data=folder, settings={"mode": "chat", "character": "Ember"})


@pytest.fixture
def page(open_page, server):
    return open_page(server, accept_downloads=True)


def test_search_opens_a_chat_and_export_downloads_it(page, server):
    page.fill("#chat-search textarea, #chat-search input", "WICK keeper")
    page.press("#chat-search textarea, #chat-search input", "Enter")
    hit = page.locator("#chat-search-results label", has_text="Tell me about lighthouses")
    hit.wait_for()
    assert "trims the wick" in hit.inner_text() and "Ember" in hit.inner_text()
    assert page.locator("#chat-search-results label").count() == 1  # the tides chat lacks the words
    hit.click()
    page.wait_for_function(STATUS_HAS, arg="Opened “Tell me about lighthouses”")
    page.wait_for_function("() => [...document.querySelectorAll(\"" + BOT + "\")]"
                           ".some(e => e.innerText.includes('never smokes'))")

    page.get_by_text("This chat", exact=True).click()
    page.click("#chat-export-json")
    link = page.wait_for_selector("#chat-export-file a")
    with page.expect_download() as download:
        link.click()
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    saved = {p.stem: json.loads(p.read_text()) for p in (server.user_data / "histories" / "Ember").glob("*.json")}
    assert exported["id"] in saved and exported["messages"] == saved[exported["id"]]["messages"]
    assert exported["messages"][0]["content"] == "Tell me about lighthouses"


def test_a_sillytavern_chat_imports_and_opens(page, server, tmp_path):
    chats = server.user_data / "histories" / "Ember"
    before = set(chats.glob("*.json"))
    page.get_by_text("This chat", exact=True).click()
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"user_name": "A", "character_name": "B"}\n{"mes": "no is_user"}\n')
    page.set_input_files("#chat-import input[type=file]", str(bad))
    page.wait_for_function(STATUS_HAS, arg="Not imported")
    assert "line 2 is not a SillyTavern message" in page.inner_text("#chat-status")
    assert set(chats.glob("*.json")) == before  # nothing written

    page.set_input_files("#chat-import input[type=file]", str(ROOT / "tests/fixtures/chats/sillytavern.jsonl"))
    page.wait_for_function(STATUS_HAS, arg="Imported")
    # Seraphina is no character here: the chat goes to the one chosen in the Chat tab.
    assert "from SillyTavern (3 messages, 1 hidden messages left out), a chat with Ember" \
        in page.inner_text("#chat-status")
    page.wait_for_function("() => [...document.querySelectorAll(\"" + BOT + "\")]"
                           ".some(e => e.innerText.includes('The trees keep watch.'))")
    (new,) = set(chats.glob("*.json")) - before
    assert json.loads(new.read_text())["messages"][1]["content"] == "Where am I? I <3 this place."
