"""Chat, characters, notebook and presets in a real Chromium against a real server
(the built-in model), with its own user data folder so every file it writes can be
checked: a full chat with a character (regenerate, continue, edit, remove last,
past chats, rename, delete), importing and exporting a card, switching presets,
a notebook completion, and two browser sessions chatting at once."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.browser.conftest import STATUS_HAS, USER, complete_in_notebook, reply_bubbles, send
from tests.support import ARTIFACTS, eventually
from webui.characters.cards import placeholder_png, read_card_json, write_card
from webui.characters.character import Character

STATUS_CHANGED = ("s => { const t = document.querySelector('#chat-status').innerText; "
                  "return t !== s && t.includes('tok/s'); }")


@pytest.fixture(scope="module")
def server(hearth_server):
    """Short greedy replies (a user preset the server starts with) keep this fast."""
    return hearth_server(presets={"short": "temperature: 0.0\nmax_new_tokens: 24\n"},
                         settings={"preset": "short", "mode": "instruct", "character": "Ember"})


@pytest.fixture(scope="module")
def user_data(server) -> Path:
    return server.user_data


@pytest.fixture
def page(open_page, server):
    return open_page(server, accept_downloads=True)


def choose(page, elem_id, option, exact=True):
    page.click(f"#{elem_id} input")
    if exact:
        page.get_by_role("option", name=option, exact=True).click()
    else:
        page.locator("[role=option]", has_text=option).first.click()


def chats(user_data, character="Ember"):
    """Chat files by id: one character's, or everyone's (character=None)."""
    pattern = f"{character}/*.json" if character else "*/*.json"
    return {p.stem: json.loads(p.read_text()) for p in (user_data / "histories").glob(pattern)}


def last_chat(user_data, character="Ember"):
    return max(chats(user_data, character).values(), key=lambda c: c["updated"])["messages"]


def answers(page, needle: str, action: Callable[[], object], count: int | None = None) -> list:
    """Do `action` and return the answers to the POSTs it sent that carry `needle`: once
    `count` have come, or (count None) once every such request has its answer and no
    other has followed for a moment."""
    sent, answered = [], []

    def on_request(request):
        if request.method == "POST" and needle in (request.post_data or ""):
            sent.append(request)

    def on_response(response):
        if response.request in sent:
            answered.append(response)

    page.on("request", on_request)
    page.on("response", on_response)
    try:
        action()
        settled = 0
        for _ in range(600):
            done = len(answered) == count if count is not None else sent and len(answered) == len(sent)
            settled = settled + 1 if done else 0
            if settled > (0 if count is not None else 3):
                break
            page.wait_for_timeout(100)
    finally:
        page.remove_listener("request", on_request)
        page.remove_listener("response", on_response)
    assert answered and len(answered) == len(sent), f"{len(answered)} of {len(sent)} requests answered"
    return answered


def changes(answer) -> list:
    """The outputs an event's answer changes (Gradio's skip sends a bare update)."""
    return [out for out in json.loads(answer.text())["data"] if out != {"__type__": "update"}]


def edit_message(page, locator, text, parts: int = 1):
    """Edit a message in the Chatbot and wait for the answers. A reply's bubble holds
    `parts` messages (its context block too): editing it edits them all, and each sends
    its own edit event, answered outside the queue with the whole chat. Only the part
    whose text changed may answer with anything: an answer from a part left alone could
    arrive last and show the chat from before the edit (or say the block cannot be
    edited)."""
    locator.hover()
    locator.locator("xpath=ancestor::div[contains(@class,'message-row')]/following-sibling::div[1]") \
        .locator("button[aria-label='Edit']").click()
    assert page.locator("#chat textarea.edit-textarea").count() == parts
    page.locator("#chat textarea.edit-textarea").first.fill(text)
    edits = answers(page, '"previous_value"', lambda: page.click("#chat button[aria-label='Submit']"), parts)
    sent = json.dumps(text, ensure_ascii=False)[1:-1]
    for answer in edits:
        if sent not in (answer.request.post_data or ""):
            assert not changes(answer), answer.text()[:300]


def test_a_full_chat_with_a_character(page, user_data):
    page.locator("#chat-mode label", has_text="chat").first.click()  # "chat", not "chat-instruct"
    page.wait_for_function("() => document.querySelector(\"#chat [data-testid='bot']\")")
    assert "Pull up a chair" in reply_bubbles(page).first.inner_text()  # Ember's greeting
    # The greeting was there before the click: the saved mode is waited for, not read once.
    eventually(lambda: yaml.safe_load((user_data / "settings.yaml").read_text())["mode"] == "chat",
               what="the chat mode to be saved")

    send(page, "Hello Ember! What is your favourite story?")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    assert reply_bubbles(page).count() == 2
    [saved] = chats(user_data).values()  # written after the message and the reply
    assert [m["role"] for m in saved["messages"]] == ["assistant", "user", "assistant"]
    assert saved["messages"][2]["content"].strip()

    before = page.inner_text("#chat-status")
    page.click("#chat-regenerate")
    page.wait_for_function(STATUS_CHANGED, arg=before)
    assert reply_bubbles(page).count() == 2 and page.locator(USER).count() == 1

    # Edit the reply into an unfinished sentence, then Continue it.
    opening = "Once upon a time, in a little cottage by the sea, there lived a"
    edit_message(page, reply_bubbles(page).last, opening, parts=2)  # and its context block
    eventually(lambda: last_chat(user_data)[-1]["content"] == opening, what="the edit to be saved")
    page.click("#chat-continue")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    continued = last_chat(user_data)[-1]["content"]
    assert continued.startswith(opening) and len(continued) > len(opening), page.inner_text("#chat-status")
    assert reply_bubbles(page).count() == 2  # the same reply, longer
    assert reply_bubbles(page).last.inner_text().startswith(opening)

    edit_message(page, page.locator(USER).last, "Tell me a riddle instead.")
    eventually(lambda: last_chat(user_data)[1]["content"] == "Tell me a riddle instead.", what="the user edit")
    code = "Here is code:\n\n```python\nprint('riddle')\n```"
    edit_message(page, reply_bubbles(page).last, code, parts=2)
    eventually(lambda: last_chat(user_data)[2]["content"] == code, what="the reply edit")
    page.wait_for_selector("#chat pre code")
    assert "print('riddle')" in page.inner_text("#chat pre code")  # markdown and code render
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-character.png"), full_page=True)

    page.click("#chat-remove-last")
    page.wait_for_function("() => document.querySelectorAll(\"#chat [data-testid='bot']\").length === 1")
    assert page.input_value("#chat-input textarea") == "Tell me a riddle instead."
    eventually(lambda: len(last_chat(user_data)) == 1, what="the exchange to be removed on disk")


def test_past_chats_new_rename_delete(page, user_data):
    send(page, "Remember the word apricot.")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    [chat_id] = [k for k, v in chats(user_data).items() if any("apricot" in m["content"] for m in v["messages"])]
    page.click("#chat-clear")  # New chat
    page.wait_for_function("() => !document.querySelector(\"#chat [data-testid='user']\")")
    # Gradio's Dropdown may send the choice twice: only one answer opens the chat (a late
    # second one would put the old name back into the name box while it is being edited).
    opened = answers(page, chat_id, lambda: choose(page, "chat-past", "apricot", exact=False))
    assert sum(bool(changes(a)) for a in opened) == 1, [a.text()[:200] for a in opened]
    page.wait_for_function("() => document.querySelector('#chat').innerText.includes('apricot')")

    page.get_by_text("This chat", exact=True).click()
    # Opening the chat puts its name in this box; text typed before that update lands
    # is overwritten by it, and the chat is then "renamed" to its old name.
    has_value = "([sel, v]) => document.querySelector(sel)?.value === v"
    page.wait_for_function(has_value, arg=["#chat-title textarea", chats(user_data)[chat_id]["title"]])
    page.fill("#chat-title textarea", "Fruit talk")
    page.wait_for_function(has_value, arg=["#chat-title textarea", "Fruit talk"])
    page.click("#chat-rename")
    # Wait for the renamed file and list themselves: a status is only a step on the way.
    eventually(lambda: chats(user_data)[chat_id]["title"] == "Fruit talk", what="the new name in the chat's file")
    assert chats(user_data)[chat_id]["title"] == "Fruit talk"
    eventually(lambda: any("Fruit talk" in c for c in page_options(page, "chat-past")),
               what="the new name in Past chats")
    assert any("Fruit talk" in c for c in page_options(page, "chat-past"))

    page.click("#chat-delete")
    eventually(lambda: chat_id not in chats(user_data), what="the chat's file to be deleted")
    page.wait_for_function(f"() => !document.querySelector(\"{USER}\")")
    assert chat_id not in chats(user_data)
    assert page.locator(USER).count() == 0


def page_options(page, elem_id):
    page.click(f"#{elem_id} input")
    options = [o.inner_text().strip().lstrip("✓").strip() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    page.click("#chat-status")  # away from the dropdown
    return options


def test_import_and_export_a_character_card(page, user_data, tmp_path):
    card = write_card(Character(name="Captain Ada", greeting="Morning, {{user}}!",
                                context="{{char}} flies an airship."), placeholder_png(32))
    (tmp_path / "ada.png").write_bytes(card)
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    page.get_by_role("tab", name="Character").click()

    page.set_input_files("#character-import input[type=file]", str(tmp_path / "fake.png"))
    page.wait_for_function("() => document.querySelector('#character-status').innerText.includes('Not imported')")
    assert "not a PNG" in page.inner_text("#character-status")
    assert not (user_data / "characters").exists()  # nothing written

    page.set_input_files("#character-import input[type=file]", str(tmp_path / "ada.png"))
    page.wait_for_function("() => document.querySelector('#character-status').innerText.includes('Imported')")
    assert page.input_value("#character-name textarea") == "Captain Ada"
    assert (user_data / "characters" / "Captain Ada.yaml").is_file()

    page.click("#character-export")
    link = page.wait_for_selector("#character-export-file a")
    with page.expect_download() as download:
        link.click()
    exported = read_card_json(Path(download.value.path()).read_bytes())
    assert exported["data"]["name"] == "Captain Ada" and exported["data"]["first_mes"] == "Morning, {{user}}!"

    # The new character is offered in the Chat tab, and chats with it.
    page.get_by_role("tab", name="Chat").click()
    choose(page, "chat-character", "Captain Ada")
    page.locator("#chat-mode label", has_text="chat-instruct").click()
    page.wait_for_function("() => document.querySelector('#chat').innerText.includes('Morning, You!')")
    send(page, "Where are we flying?")
    page.wait_for_function(STATUS_HAS, arg="tok/s")
    assert len(chats(user_data, "Captain Ada")) == 1


def test_switching_presets_sets_the_samplers_and_is_remembered(page, user_data):
    try:
        page.get_by_role("tab", name="Parameters").click()
        assert page.input_value("#param-max_new_tokens input[type=number]") == "24"
        choose(page, "preset-choice", "creative")
        page.wait_for_function("() => document.querySelector('#preset-status').innerText.includes('creative')")
        assert page.input_value("#param-temperature input[type=number]") == "1.1"
        assert page.input_value("#param-min_p input[type=number]") == "0.03"
        assert page.input_value("#param-top_k input[type=number]") == "0"
        assert page.input_value("#param-max_new_tokens input[type=number]") == "24"  # yours, not the preset's
        assert yaml.safe_load((user_data / "settings.yaml").read_text())["preset"] == "creative"

        page.fill("#preset-name textarea", "my sampler")
        page.click("#preset-save")
        page.wait_for_function("() => document.querySelector('#preset-status').innerText.includes('Saved')")
        assert yaml.safe_load((user_data / "presets" / "my sampler.yaml").read_text())["temperature"] == 1.1

        page.reload()
        page.get_by_role("tab", name="Parameters").click()
        page.wait_for_function("() => document.querySelector('#preset-choice input')?.value === 'my sampler'")
        assert page.input_value("#param-temperature input[type=number]") == "1.1"
    finally:
        (user_data / "settings.yaml").write_text(
            yaml.safe_dump({**yaml.safe_load((user_data / "settings.yaml").read_text()), "preset": "short"}))


def test_notebook_completion(page):
    prompt = "The three primary colours are"
    text = complete_in_notebook(page, prompt)
    assert text.startswith(prompt) and len(text) > len(prompt)
    status = page.inner_text("#notebook-status")
    assert "tokens in the notebook of 2048" in status and "24 tokens" in status
    page.click("#notebook-count")
    page.wait_for_function("() => /^\\d+ tokens in the notebook/.test(document.querySelector('#notebook-status').innerText)")


def test_two_browser_sessions_chat_at_once_with_separate_histories(open_page, server, user_data):
    a, b = open_page(server), open_page(server)
    send(a, "My name is Alice.")
    send(b, "My name is Bob.")
    for pg in (a, b):
        pg.wait_for_function(STATUS_HAS, arg="tok/s")
    assert [u.inner_text() for u in a.locator(USER).all()] == ["My name is Alice."]
    assert [u.inner_text() for u in b.locator(USER).all()] == ["My name is Bob."]
    assert "Bob" not in a.inner_text("#chat") and "Alice" not in b.inner_text("#chat")
    firsts = [next((m["content"] for m in c["messages"] if m["role"] == "user"), None)
              for c in chats(user_data, character=None).values()]
    assert "My name is Alice." in firsts and "My name is Bob." in firsts
