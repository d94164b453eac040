"""A group chat in real Chromium against a real server (the built-in model, greedy):
two shipped characters made a group, a message sent, and the reply's bubble names the
member whose turn it was; the chat file keeps the group and each speaker."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import running_server

STATUS_HAS = "s => document.querySelector('#chat-status').innerText.includes(s)"
# The reply bubbles that name a speaker (other bot bubbles, e.g. the context budget, do not).
NAMED = ("() => [...document.querySelectorAll(\"#chat [data-testid='bot']\")].map(b => b.innerText.trim())"
         ".filter(t => /^(Ember|Sage): ./.test(t)).map(t => t.split(':')[0]).join(',')")


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    """Short greedy replies in chat mode (a user preset the server starts with)."""
    folder = tmp_path_factory.mktemp("user_data")
    (folder / "presets").mkdir()
    (folder / "presets" / "short.yaml").write_text("temperature: 0.0\nmax_new_tokens: 16\n")
    (folder / "settings.yaml").write_text("preset: short\nmode: chat\ncharacter: Ember\n")
    return folder


@pytest.fixture(scope="module")
def server(user_data):
    with running_server("--n-ctx", "2048", env={"HEARTH_USER_DATA": str(user_data)}) as url:
        yield url


def test_a_group_of_two_shipped_characters_names_the_speaker_of_each_reply(browser, server, user_data):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(server)
        page.wait_for_selector("#chat-input textarea")
        page.get_by_role("tab", name="Parameters").click()
        page.wait_for_function("() => document.querySelector('#preset-choice input')?.value === 'short'")
        page.get_by_role("tab", name="Chat").click()
        page.wait_for_function("() => document.querySelector('#chat-mode input:checked')?.value === 'chat'")

        page.get_by_text("Group chat", exact=True).click()
        for name in ("Ember", "Sage"):
            page.click("#chat-group-members input")
            page.get_by_role("option", name=name, exact=True).click()
        page.click("#chat-status")  # away from the dropdown
        page.click("#chat-group-start")
        page.wait_for_function(STATUS_HAS, arg="Group chat with Ember, Sage")
        page.wait_for_function(f"s => ({NAMED})() === s", arg="Ember")  # Ember's greeting opens it, named

        page.fill("#chat-input textarea", "Good evening, both of you.")
        page.press("#chat-input textarea", "Enter")
        page.wait_for_function(STATUS_HAS, arg="tok/s")
        page.wait_for_function(f"s => ({NAMED})() === s", arg="Ember,Sage")  # round-robin: Sage's turn

        files = list((user_data / "histories" / "Ember").glob("*.json"))
        assert len(files) == 1
        saved = json.loads(files[0].read_text())
        assert saved["group"] == {"members": ["Ember", "Sage"], "turns": "round-robin"}
        assert [m.get("name") for m in saved["messages"]] == ["Ember", None, "Sage"]
    finally:
        context.close()
