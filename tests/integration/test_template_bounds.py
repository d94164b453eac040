"""Hostile chat templates through the real chat path on the real SmolLM2 model: each
ends its own reply with a one-line error within a few seconds, while another
person's reply submitted at the same time is answered normally (the generation
worker is not blocked); Stop works while a template renders; the server's memory
stays put; a custom template typed in one browser session is that session's own and
never reaches the API."""
from __future__ import annotations

import dataclasses
import threading
import time

import psutil
import pytest

from loaders.params import GenerationParams
from tests.unit.chat.test_template_bounds import DOUBLING, NESTED_RANGES
from webui.characters.store import CharacterStore
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.histories import HistoryStore
from webui.chat.render_worker import MEMORY_LIMIT_MB
from webui.chat.sandbox import render_in_sandbox
from webui.chat.settings import SettingsStore
from webui.chat.templates import CUSTOM_TEMPLATE, MODEL_TEMPLATE, RENDER_LIMIT_S
from webui.runtime.generation import Failed, Finished
from webui.ui.chat_tab import ChatState, choose_template, edit_template, save_template
from webui.userdata.folders import SHIPPED_CHARACTERS

SHORT = GenerationParams(temperature=0.0, seed=1, max_new_tokens=16)
FEW_SECONDS = RENDER_LIMIT_S + 6  # the limit, a render process's start and a loaded machine
MB = 1024 * 1024

# The same hostile templates as the unit tests, but looping over every message: the
# chat path sends the user's message after the character's greeting.
NESTED_OVER_MESSAGE = ("{% for m in messages %}{% for a in m['content'] %}{% for b in m['content'] %}"
                       "{% endfor %}{% endfor %}{% endfor %}")
HOSTILE = [
    pytest.param(NESTED_RANGES, "took longer than 2 s to render", id="nested-range-loops"),
    pytest.param(NESTED_OVER_MESSAGE, "took longer than 2 s to render", id="nested-loops-over-a-message"),
    pytest.param(DOUBLING, f"needed more than {MEMORY_LIMIT_MB} MB of memory", id="string-doubled-30-times"),
]
LONG_MESSAGE = "Please read this. " + "word " * 20_000  # 100,000 characters to loop over
CHATML_BODY = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
               "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Harmless while the whole history fits (which is what is rendered ahead, in the
# sender's thread), endless once the worker must drop old turns: the one case where
# the worker itself renders.
ENDLESS_WHEN_TRUNCATED = (
    "{% if messages and messages[0]['content'].startswith('turn ') "
    "and not messages[0]['content'].startswith('turn 0 ') %}" + NESTED_RANGES + "{% endif %}" + CHATML_BODY)


@pytest.fixture
def core(hearth, tmp_path, monkeypatch):
    """The session's real model, with this test's own folders for chats and settings."""
    monkeypatch.setattr(hearth, "histories", HistoryStore(tmp_path / "histories"))
    monkeypatch.setattr(hearth, "characters", CharacterStore(SHIPPED_CHARACTERS, tmp_path / "characters"))
    monkeypatch.setattr(hearth, "settings", SettingsStore(tmp_path / "settings.yaml"))
    # Conversations read the user's space (one space when there are no accounts).
    monkeypatch.setattr(hearth, "_single", dataclasses.replace(hearth._single, histories=hearth.histories, characters=hearth.characters, settings=hearth.settings))
    return hearth


def custom(template: str) -> ChatOptions:
    return ChatOptions(mode="instruct", character="Ember", template=CUSTOM_TEMPLATE, custom_template=template)


def ended(job, timeout: float):
    """The job's last event, or None if it has not ended within `timeout` (a test
    must fail, not hang, when the worker is stuck)."""
    box = {}

    def read():
        for event in job.events():
            box["last"] = event

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return None if reader.is_alive() else box.get("last")


def send_in_thread(conv: Conversation, text: str, options: ChatOptions) -> tuple[threading.Thread, dict]:
    """conv.send and the reply's end, in a thread: (thread, box with reply, end, seconds)."""
    box = {}

    def run():
        start = time.monotonic()
        box["reply"] = conv.send(text, options, SHORT)
        box["end"] = ended(box["reply"].job, 2 * FEW_SECONDS)
        box["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def long_history(n: int = 20) -> list[dict]:
    """About 3,000 tokens: more than the 2,048 of the test model's context."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "lorem ipsum " * 70}
            for i in range(n)]


@pytest.mark.parametrize("template,message", HOSTILE)
def test_a_hostile_template_fails_its_own_reply_and_another_is_answered_meanwhile(core, template, message):
    server = psutil.Process()
    before = server.memory_info().rss
    alice, bob = core.conversation(custom(template)), core.conversation(ChatOptions(mode="instruct"))
    thread, box = send_in_thread(alice, LONG_MESSAGE, custom(template))
    time.sleep(0.2)  # Alice's template is rendering
    answer = bob.send("Name a colour.", ChatOptions(mode="instruct"), SHORT)
    end = ended(answer.job, FEW_SECONDS)
    assert isinstance(end, Finished), "Bob's reply waited on Alice's template"
    assert end.stats.completion_tokens > 0 and end.stats.queued_seconds < 1.0
    thread.join(2 * FEW_SECONDS)
    assert not thread.is_alive(), "Alice's template was never stopped"
    assert isinstance(box["end"], Failed) and box["seconds"] < FEW_SECONDS
    assert message in box["end"].message and "\n" not in box["end"].message
    assert alice.finish(box["reply"], failed=True) == LONG_MESSAGE  # her text goes back to the box
    assert server.memory_info().rss - before < 100 * MB


def test_the_worker_renders_within_the_limit_when_it_must_drop_turns(core):
    options = custom(ENDLESS_WHEN_TRUNCATED)
    alice, bob = core.conversation(options), core.conversation(ChatOptions(mode="instruct"))
    alice.history.messages.extend(long_history())
    start = time.monotonic()
    reply = alice.send("turn 20 and now?", options, SHORT)
    time.sleep(0.3)  # the worker is fitting Alice's history
    answer = bob.send("Name a colour.", ChatOptions(mode="instruct"), SHORT)
    end = ended(reply.job, FEW_SECONDS)
    assert isinstance(end, Failed) and "took longer than 2 s" in end.message
    assert time.monotonic() - start < RENDER_LIMIT_S + 2  # the worker was held for the limit at most
    bob_end = ended(answer.job, FEW_SECONDS)
    assert isinstance(bob_end, Finished) and bob_end.stats.completion_tokens > 0


def test_stop_ends_a_reply_whose_template_is_rendering_on_the_worker(core):
    options = custom(ENDLESS_WHEN_TRUNCATED)
    alice, bob = core.conversation(options), core.conversation(ChatOptions(mode="instruct"))
    alice.history.messages.extend(long_history())
    reply = alice.send("turn 20 and now?", options, SHORT)
    time.sleep(0.5)  # the worker is rendering Alice's shortened history
    stopped_at = time.monotonic()
    alice.stop()
    end = ended(reply.job, FEW_SECONDS)
    assert end is not None and time.monotonic() - stopped_at < 0.5
    assert isinstance(end, Failed) and "stopped" in end.message
    answer = bob.send("Name a colour.", ChatOptions(mode="instruct"), SHORT)
    bob_end = ended(answer.job, FEW_SECONDS)
    assert isinstance(bob_end, Finished) and bob_end.stats.queued_seconds < 0.5


def test_a_normal_custom_template_drives_the_model_as_before(core, monkeypatch):
    conv = core.conversation(custom(CHATML_BODY))
    reply = conv.send("Name a colour.", custom(CHATML_BODY), SHORT)
    end = ended(reply.job, FEW_SECONDS)
    assert isinstance(end, Finished) and end.stats.completion_tokens > 0
    assert reply.job.prompt.built.text == render_in_sandbox(
        CHATML_BODY, [{"role": "user", "content": "Name a colour."}])


def test_a_typed_custom_template_is_that_sessions_own_until_saved(core):
    mine, theirs = ChatState(), ChatState()
    assert edit_template(mine, NESTED_RANGES) == CUSTOM_TEMPLATE
    saved = core.settings.load()
    assert saved.custom_template == "" and saved.template == MODEL_TEMPLATE  # nothing reached the file
    # Another browser choosing Custom starts from what its own box shows, not from mine.
    assert choose_template(core, theirs, CUSTOM_TEMPLATE, "{{ 'theirs' }}") == "{{ 'theirs' }}"
    choose_template(core, mine, "ChatML", "")  # away and back: my text is still mine
    assert choose_template(core, mine, CUSTOM_TEMPLATE, "") == NESTED_RANGES
    assert "Saved" in save_template(core, CUSTOM_TEMPLATE, CHATML_BODY)  # saving is explicit
    assert core.settings.load().custom_template == CHATML_BODY
    assert core.settings.load().template == CUSTOM_TEMPLATE
    assert choose_template(core, ChatState(), CUSTOM_TEMPLATE, "") == CHATML_BODY


def test_the_api_never_uses_a_custom_template(core, greedy):
    core.settings.update(template=CUSTOM_TEMPLATE, custom_template="CUSTOM {{ messages | length }}")
    job = core.chat([{"role": "user", "content": "Say hi."}], greedy)
    assert "CUSTOM" not in job.prompt and "<|im_start|>user\nSay hi.<|im_end|>" in job.prompt
    text, stats = job.result()
    assert stats.completion_tokens > 0


def test_a_custom_choice_saved_without_a_template_falls_back_to_the_models_own(tmp_path):
    store = SettingsStore(tmp_path / "settings.yaml")
    (tmp_path / "settings.yaml").write_text("template: Custom\ncustom_template: ''\n")
    assert store.load().template == MODEL_TEMPLATE
