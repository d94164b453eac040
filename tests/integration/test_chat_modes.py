"""Each chat mode, template and chat action on the real SmolLM2 model through
llama.cpp: what the model is given, what it answers, and what lands on disk."""
from __future__ import annotations

import dataclasses
import json

import pytest

from loaders.params import GenerationParams
from webui.characters.store import CharacterStore
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.histories import HistoryError, HistoryStore
from webui.chat.templates import BUILTIN_TEMPLATES, CUSTOM_TEMPLATE, render_chat_prompt
from webui.userdata.folders import SHIPPED_CHARACTERS

SHORT = GenerationParams(temperature=0.0, seed=1, max_new_tokens=16)


@pytest.fixture
def core(hearth, tmp_path, monkeypatch):
    """The session's real model, with this test's own folder for chats and characters."""
    histories = HistoryStore(tmp_path / "histories")
    characters = CharacterStore(SHIPPED_CHARACTERS, tmp_path / "characters")
    # Conversations read the user's space (one space when there are no accounts).
    monkeypatch.setattr(hearth, "_single", dataclasses.replace(hearth._single, histories=histories,
                                                               characters=characters))
    monkeypatch.setattr(hearth, "histories", histories)
    monkeypatch.setattr(hearth, "characters", characters)
    return hearth


def run(conv: Conversation, reply):
    """Drive a reply to the end the way the Chat tab does."""
    text, stats = reply.job.result()
    conv.update(reply, text)
    conv.finish(reply, failed=False)
    return stats


def on_disk(core, conv) -> list[dict]:
    path = core.histories.root / conv.history.character / f"{conv.history.id}.json"
    return json.loads(path.read_text())["messages"]


@pytest.mark.parametrize("mode", ["chat", "chat-instruct", "instruct"])
def test_each_mode_on_the_real_model(core, mode):
    options = ChatOptions(mode=mode, character="Ember")
    conv = core.conversation(options)
    greeted = mode != "instruct"
    assert bool(conv.messages) == greeted  # the greeting opens a chat in the chat modes
    reply = conv.send("What do you like to do in the evenings?", options, SHORT)
    stats = run(conv, reply)
    assert stats.completion_tokens > 0
    answer = conv.messages[-1]["content"]
    assert answer.strip() and answer == answer.strip()
    prompt = reply.job.prompt.built.text
    if mode == "chat":
        assert prompt.endswith("You: What do you like to do in the evenings?\nEmber:")
        assert "<|im_start|>" not in prompt and "\nYou:" not in answer
    elif mode == "chat-instruct":
        assert prompt.startswith("<|im_start|>system\nEmber is a cheerful, curious spirit")
        assert "<|im_start|>assistant\n*The fire crackles" in prompt  # the greeting is Ember's turn
    else:
        assert "SmolLM" in prompt and "Ember" not in prompt  # the model's own template, no character
    assert "<|im_end|>" not in answer
    assert [m["role"] for m in on_disk(core, conv)] == (["assistant"] if greeted else []) + ["user", "assistant"]


@pytest.mark.parametrize("name", list(BUILTIN_TEMPLATES))
def test_every_builtin_template_drives_the_model(core, name):
    options = ChatOptions(mode="instruct", character="Ember", template=name)
    conv = core.conversation(options)
    reply = conv.send("Name a colour.", options, SHORT)
    run(conv, reply)
    assert reply.job.prompt.built.text == render_chat_prompt(
        BUILTIN_TEMPLATES[name].source, [{"role": "user", "content": "Name a colour."}])
    assert set(BUILTIN_TEMPLATES[name].stop) <= set(reply.job.params.stop)
    answer = conv.messages[-1]["content"]
    assert not any(stop in answer for stop in BUILTIN_TEMPLATES[name].stop)


def test_a_long_history_is_truncated_and_the_character_kept(core):
    options = ChatOptions(mode="chat-instruct", character="Ember")
    conv = core.conversation(options)
    for i in range(300):
        conv.messages.append({"role": "user", "content": f"Question {i}: tell me about the number {i}."})
        conv.messages.append({"role": "assistant", "content": f"The number {i} is a fine number, {i} indeed."})
    # A reply of up to 1,536 tokens keeps half the 2,048-token context free, so the
    # history gets 1,024; the first token proves the model took the fitted prompt.
    reply = conv.send("And what about the fire?", options, dataclasses.replace(SHORT, max_new_tokens=1536))
    next(reply.job.events())
    reply.job.stop()
    stats = run(conv, reply)
    built = reply.job.prompt.built
    assert built.dropped > 450 and stats.completion_tokens > 0
    assert 800 < len(built.ids) <= 1024
    assert stats.prompt_tokens == len(built.ids)
    assert "Ember is a cheerful, curious spirit" in built.text
    assert "Question 0:" not in built.text and "And what about the fire?" in built.text


def test_regenerate_continue_remove_last_and_edit(core):
    options = ChatOptions(mode="chat", character="Ember")
    conv = core.conversation(options)
    run(conv, conv.send("Tell me a story.", options, SHORT))
    first = conv.messages[-1]["content"]

    reply = conv.regenerate(options, dataclasses.replace(SHORT, temperature=1.0, seed=7))
    assert on_disk(core, conv)[-1]["content"] == first  # the old reply stays until the new one is done
    run(conv, reply)
    assert len(conv.messages) == 3 and on_disk(core, conv)[-1]["content"] == conv.messages[-1]["content"]

    conv.edit(2, "Once upon a time, a dragon")
    assert on_disk(core, conv)[2]["content"] == "Once upon a time, a dragon"
    reply = conv.continue_reply(options, SHORT)
    run(conv, reply)
    assert reply.job.prompt.built.text.endswith("Ember: Once upon a time, a dragon")
    assert conv.messages[-1]["content"].startswith("Once upon a time, a dragon")
    assert len(conv.messages[-1]["content"]) > len("Once upon a time, a dragon")

    assert conv.remove_last() == "Tell me a story."
    assert [m["role"] for m in on_disk(core, conv)] == ["assistant"]  # the greeting stays
    with pytest.raises(HistoryError, match="nothing to remove"):
        conv.remove_last()
    with pytest.raises(HistoryError, match="nothing to regenerate"):
        conv.regenerate(options, SHORT)


def test_past_chats_open_rename_delete(core):
    options = ChatOptions(mode="instruct", character="Ember")
    conv = core.conversation(options)
    run(conv, conv.send("First chat.", options, SHORT))
    first_id = conv.history.id
    conv.new_chat(options)
    run(conv, conv.send("Second chat.", options, SHORT))
    assert [c.title for c in conv.past_chats()] == ["Second chat.", "First chat."]
    conv.open(first_id)
    assert conv.messages[0]["content"] == "First chat."
    conv.rename("The first one")
    assert {c.title for c in conv.past_chats()} == {"The first one", "Second chat."}
    conv.delete(options)
    assert [c.title for c in conv.past_chats()] == ["Second chat."]
    assert conv.messages == []  # a fresh chat after deleting


def test_two_conversations_at_once_have_their_own_history_and_stop(core):
    options = ChatOptions(mode="instruct", character="Ember")
    alice, bob = core.conversation(options), core.conversation(options)
    long = GenerationParams(temperature=0.0, max_new_tokens=400, ignore_eos=True)
    a = alice.send("I am Alice. Write a long poem.", options, long)
    b = bob.send("I am Bob. Write a long poem.", options, dataclasses.replace(long, max_new_tokens=30))
    next(a.job.events())  # Alice's reply has started
    alice.stop()
    a_stats, b_stats = run(alice, a), run(bob, b)
    assert a_stats.finish_reason == "cancelled" and a_stats.completion_tokens < 400
    assert b_stats.finish_reason == "length" and b_stats.completion_tokens == 30  # Bob's Stop is his own
    assert alice.history.id != bob.history.id
    assert on_disk(core, alice)[0]["content"] == "I am Alice. Write a long poem."
    assert on_disk(core, bob)[0]["content"] == "I am Bob. Write a long poem."
    assert all("Alice" not in m["content"] for m in on_disk(core, bob))


def test_a_refused_send_gives_the_text_back_and_keeps_the_file_clean(core):
    options = ChatOptions(mode="instruct", character="Ember", template=CUSTOM_TEMPLATE,
                          custom_template="{{ ''.__class__.__mro__ }}")
    conv = core.conversation(options)
    reply = conv.send("Hello?", options, SHORT)
    events = list(reply.job.events())
    assert "Python internals" in events[-1].message
    assert conv.finish(reply, failed=True) == "Hello?"
    assert conv.messages == [] and on_disk(core, conv) == []

    huge = ChatOptions(mode="instruct", character="Ember")
    reply = conv.send("word " * 5000, huge, SHORT)
    events = list(reply.job.events())
    assert "tokens" in events[-1].message and "\n" not in events[-1].message
    assert conv.finish(reply, failed=True) == "word " * 5000


def test_the_api_chat_helper_still_works(core, greedy):
    text, stats = core.chat([{"role": "user", "content": "Say hi."}], greedy, "Be brief.").result()
    assert text.strip() and stats.completion_tokens > 0
