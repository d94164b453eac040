"""A group chat in real Chromium against a real server (the built-in model, greedy):
two shipped characters made a group, a message sent, and the reply's bubble names the
member whose turn it was; the chat file keeps the group and each speaker."""
from __future__ import annotations

import json

import pytest

from tests.browser.conftest import STATUS_HAS, send

# The reply bubbles that name a speaker (other bot bubbles, e.g. the context budget, do not).
NAMED = ("() => [...document.querySelectorAll(\"#chat [data-testid='bot']\")].map(b => b.innerText.trim())"
         ".filter(t => /^(Ember|Sage): ./.test(t)).map(t => t.split(':')[0]).join(',')")


@pytest.fixture(scope="module")
def server(hearth_server):
    """Short greedy replies in chat mode (a user preset the server starts with)."""
    return hearth_server(presets={"short": "temperature: 0.0\nmax_new_tokens: 16\n"},
                         settings={"preset": "short", "mode": "chat", "character": "Ember"})


def test_a_group_of_two_shipped_characters_names_the_speaker_of_each_reply(open_page, server):
    page = open_page(server)
    page.get_by_text("Group chat", exact=True).click()
    for name in ("Ember", "Sage"):
        page.click("#chat-group-members input")
        page.get_by_role("option", name=name, exact=True).click()
    page.click("#chat-status")  # away from the dropdown
    page.click("#chat-group-start")
    page.wait_for_function(STATUS_HAS, arg="Group chat with Ember, Sage")
    page.wait_for_function(f"s => ({NAMED})() === s", arg="Ember")  # Ember's greeting opens it, named

    send(page, "Good evening, both of you.")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    page.wait_for_function(f"s => ({NAMED})() === s", arg="Ember,Sage")  # round-robin: Sage's turn

    files = list((server.user_data / "histories" / "Ember").glob("*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["group"] == {"members": ["Ember", "Sage"], "turns": "round-robin"}
    assert [m.get("name") for m in saved["messages"]] == ["Ember", None, "Sage"]
