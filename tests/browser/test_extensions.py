"""Extensions in a real Chromium: switch one on in the Extensions tab, see its tab,
use it (documents: upload a file, ask about it, see the source and the marked
prompt; stats: the live summary), and see a broken extension reported while the
chat keeps working."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.conftest import BOT, STATUS_HAS, reply_bubbles, send
from tests.support import ARTIFACTS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "extensions"


@pytest.fixture(scope="module")
def server(hearth_server):
    """Its own server: a fresh user data folder (extension switches are remembered
    there) and the test-only broken extensions beside the shipped ones. Greedy
    (the deterministic preset): the tests read what the model answers."""
    return hearth_server("--extensions-dir", str(FIXTURES), "--preset", "deterministic")


@pytest.fixture
def ext_page(open_page, server):
    return open_page(server, preset="deterministic")


def switch_on(page, name: str) -> None:
    page.get_by_role("tab", name="Extensions").click()
    page.click(f"#ext-toggle-{name} input")
    page.wait_for_function("n => document.querySelector('#ext-status-' + n).innerText.includes('on')", arg=name)


def ask(page, text: str) -> str:
    page.get_by_role("tab", name="Chat").click()
    before = reply_bubbles(page).count()
    send(page, text)
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    page.wait_for_function(f"n => document.querySelectorAll(\"{BOT}\").length > n", arg=before)
    return reply_bubbles(page).last.inner_text()


def test_documents_switched_on_in_the_ui_answers_about_an_uploaded_file(ext_page, server, tmp_path):
    page = ext_page
    assert not page.get_by_role("tab", name="Documents").is_visible()
    switch_on(page, "documents")
    page.get_by_role("tab", name="Documents").click()
    notes = tmp_path / "lighthouse.md"
    notes.write_text("# Lighthouse keeper's notes\n\nThe lighthouse on Maple Island was built in 1887 "
                     "by the engineer Clara Voss.\n\nIts lamp is lit every evening at 7 pm.\n")
    page.set_input_files("#documents-upload input[type=file]", str(notes))
    page.wait_for_function("() => document.querySelector('#documents-status').innerText.includes('lighthouse.md')")
    assert "✅ lighthouse.md: 1 passage" in page.inner_text("#documents-status")
    assert "lighthouse.md" in page.inner_text("#documents-list")

    reply = ask(page, "Who built the lighthouse on Maple Island?")
    assert "Clara Voss" in reply
    assert "📄 Sources (quoted to the model as untrusted data): lighthouse.md, lines 1-5" in reply

    # The Documents tab marks which parts of the prompt came from the file.
    page.get_by_role("tab", name="Documents").click()
    page.wait_for_function("() => document.querySelector('#documents-last-prompt').innerText"
                           ".includes('from lighthouse.md, lines 1-5 (untrusted)')")
    seen = page.inner_text("#documents-last-prompt")
    assert "Clara Voss" in seen and "your message" in seen
    page.screenshot(path=str(ARTIFACTS / "extensions-documents.png"), full_page=True)

    # Remembered: the switch is saved, and a new page shows the tab.
    saved = json.loads((server.user_data / "extensions.json").read_text())
    assert "documents" in saved["enabled"]
    page.reload()
    page.wait_for_selector("#chat-input textarea")
    page.get_by_role("tab", name="Documents").wait_for(state="visible")


def test_stats_tab_shows_recent_replies(ext_page):
    page = ext_page
    ask(page, "Say hello.")
    switch_on(page, "stats")
    page.get_by_role("tab", name="Stats").click()
    page.wait_for_function("() => document.querySelector('#stats-summary').innerText.includes('recent replies')")
    assert "generation" in page.inner_text("#stats-summary")
    page.screenshot(path=str(ARTIFACTS / "extensions-stats.png"), full_page=True)


def test_broken_extensions_are_reported_and_the_chat_keeps_working(ext_page):
    page = ext_page
    page.get_by_role("tab", name="Extensions").click()
    assert "cannot be loaded" in page.inner_text("#ext-status-broken_import")
    assert "ImportError: this extension is broken on purpose" in page.inner_text("#ext-status-broken_import")
    assert not page.is_enabled("#ext-toggle-broken_import input")
    switch_on(page, "raising")
    reply = ask(page, "Name a colour.")
    assert reply.strip()
    page.get_by_text("Extension raising was switched off").first.wait_for()
    # The notice stays until dismissed (it sits over the tab bar's right end), as a user would.
    page.locator("[data-testid='toast-close']").first.click()
    page.get_by_role("tab", name="Extensions").click()
    page.click("#ext-refresh")
    page.wait_for_function("() => document.querySelector('#ext-status-raising').innerText"
                           ".includes('switched off after an error')")
    assert not page.is_checked("#ext-toggle-raising input")
    page.screenshot(path=str(ARTIFACTS / "extensions-broken.png"), full_page=True)
