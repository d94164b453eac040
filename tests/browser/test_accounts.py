"""Two people on one server, each in their own browser context (real Chromium): alice
(an admin) and bob (a user). Bob never sees alice's chats, documents, prompt or
passages, and never gets the admin's tabs and switches."""
from __future__ import annotations

import pytest

from tests.browser.conftest import STATUS_HAS, send, settle
from webui.accounts.users import UserBook

pytestmark = pytest.mark.browser
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
# Greedy and short: the replies are read, and only their sources matter.
PRESET = "temperature: 0.0\ntop_k: 1\ntop_p: 1.0\nmin_p: 0.0\nrepetition_penalty: 1.0\nmax_new_tokens: 40\n"


@pytest.fixture(scope="module")
def server(hearth_server, tmp_path_factory):
    data = tmp_path_factory.mktemp("user_data")
    book = UserBook(data / "users.json")
    for name, password in PASSWORDS.items():
        book.add(name, password)
    files = {f"users/{name}/{path}": text for name in PASSWORDS
             for path, text in (("presets/short.yaml", PRESET), ("settings.yaml", "preset: short\n"))}
    return hearth_server("--extensions", "documents", user_data=data, files=files)


@pytest.fixture
def people(open_page, server):
    def open_as(name: str):
        page = open_page(server.url, ready=False)
        page.get_by_label("username").fill(name)
        page.get_by_label("password").fill(PASSWORDS[name])
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#chat-input textarea")
        page.wait_for_function("n => document.querySelector('#account-user')?.innerText.includes(n)", arg=name)
        settle(page, preset="short")  # the user's preset, so replies are greedy
        return page

    return open_as


def add_file(page, path) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.set_input_files("#documents-upload input[type=file]", str(path))
    page.wait_for_function("n => document.querySelector('#documents-list').innerText.includes(n)", arg=path.name)


def ask(page, text: str) -> str:
    """Send a message; the chat's whole text once the reply has finished."""
    page.get_by_role("tab", name="Chat").click()
    send(page, text)
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    return page.inner_text("#chat")


def last_prompt(page, source: str) -> str:
    """The Documents tab's last prompt, once it shows a passage from `source`."""
    page.get_by_role("tab", name="Documents").click()
    page.wait_for_function("s => document.querySelector('#documents-last-prompt').innerText.includes(s)",
                           arg=f"from {source}")
    return page.inner_text("#documents-last-prompt")


def past_chats(page, own: str) -> list[str]:
    """The Chat tab's past chats, once the user's own chat `own` is among them."""
    page.get_by_role("tab", name="Chat").click()
    page.click("#chat-past input")
    page.locator("[role=option]", has_text=own).first.wait_for()
    options = [o.inner_text() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return options


def test_bob_never_sees_alices_chats_documents_prompt_passages_or_admin_tabs(people, server, tmp_path):
    lighthouse, garden = tmp_path / "lighthouse.md", tmp_path / "garden.md"
    lighthouse.write_text("# Lighthouse keeper's notes\n\nThe lighthouse on Maple Island was built in 1887 "
                          "by the engineer Clara Voss.\n")
    garden.write_text("# Garden notes\n\nThe vegetable garden behind the school grows pumpkins and beans.\n")

    alice = people("alice")
    add_file(alice, lighthouse)
    assert "Sources (quoted to the model as untrusted data): lighthouse.md" in ask(
        alice, "Who built the lighthouse on Maple Island?")
    assert "Clara Voss" in last_prompt(alice, "lighthouse.md")

    bob = people("bob")
    add_file(bob, garden)
    files = bob.inner_text("#documents-list")
    assert "garden.md" in files and "lighthouse.md" not in files
    reply = ask(bob, "What grows in the vegetable garden behind the school?")
    assert "lighthouse" not in reply
    seen = last_prompt(bob, "garden.md")
    assert "Clara Voss" not in seen and "Maple Island" not in seen and "lighthouse" not in seen
    assert not any("lighthouse" in chat for chat in past_chats(bob, "vegetable garden"))

    # Alice's own view is unchanged by bob's turn.
    seen = last_prompt(alice, "lighthouse.md")
    assert "garden" not in seen
    assert "garden.md" not in alice.inner_text("#documents-list")
    # On disk: each library and history in its owner's folder.
    data = server.user_data
    assert list((data / "users" / "bob" / "histories").rglob("*.json"))
    assert not list((data / "users" / "bob").rglob("*lighthouse*"))

    # Only the admin gets the model tabs and the extension switches (the server refuses
    # them too: tests/integration/test_accounts.py).
    bob.get_by_role("tab", name="Chat").click()
    bob.wait_for_function("() => document.body.classList.contains('hearth-not-admin')")
    assert not bob.get_by_role("tab", name="Model").is_visible()
    assert not bob.get_by_role("tab", name="Download").is_visible()
    assert bob.get_by_role("tab", name="Parameters").is_visible()
    bob.get_by_role("tab", name="Extensions").click()
    assert bob.locator("#ext-toggle-documents input").is_disabled()
    alice.get_by_role("tab", name="Model").wait_for(state="visible")
    alice.get_by_role("tab", name="Extensions").click()
    assert alice.locator("#ext-toggle-documents input").is_enabled()
