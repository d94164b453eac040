"""Group chats and the author's note on the real SmolLM2 model through llama.cpp: two
shipped characters answer in round-robin order, each reply saved with its speaker;
the author's note reaches the prompt at its depth; instruct mode refuses a group in
one line and loses nothing."""
from __future__ import annotations

import json

import pytest

from loaders.params import GenerationParams
from webui.characters.store import CharacterStore
from webui.chat.authors_note import AuthorsNote
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.group import GroupError, make_group
from webui.chat.histories import HistoryStore
from webui.userdata.folders import SHIPPED_CHARACTERS

SHORT = GenerationParams(temperature=0.0, seed=1, max_new_tokens=16)


@pytest.fixture
def conversation(hearth, tmp_path):
    """A conversation on the session's real model, with this test's own folders."""
    def make(options: ChatOptions) -> Conversation:
        return Conversation(CharacterStore(SHIPPED_CHARACTERS, tmp_path / "characters"),
                            HistoryStore(tmp_path / "histories"), hearth, hearth.extensions, options)
    return make


def run(conv: Conversation, reply) -> None:
    """Drive a reply to the end the way the Chat tab does."""
    text, _ = reply.job.result()
    conv.update(reply, text)
    conv.finish(reply, failed=False)


def on_disk(conv: Conversation) -> dict:
    return json.loads((conv.histories.root / conv.history.character / f"{conv.history.id}.json").read_text())


def test_two_members_answer_in_round_robin_order_each_saved_with_its_speaker(conversation):
    # chat-instruct here; chat mode's transcript is the browser test's (tests/browser/test_chat_group.py).
    options = ChatOptions(mode="chat-instruct", character="Ember")
    conv = conversation(options)
    conv.start_group(make_group(["Ember", "Sage"]), options)
    assert conv.messages[0]["name"] == "Ember" and "fire crackles" in conv.messages[0]["content"]
    first = conv.send("Good evening, both of you.", options, SHORT)
    run(conv, first)
    second = conv.send("What shall we do tonight?", options, SHORT)
    run(conv, second)
    replies = [m for m in conv.messages if m["role"] == "assistant"]
    assert [m["name"] for m in replies] == ["Ember", "Sage", "Ember"]
    assert all(m["content"].strip() for m in replies)
    # Sage's prompt: Sage's persona, a line on Ember, Ember's greeting named as Ember's.
    prompt = first.job.prompt.built
    assert "Sage is an old, dry-humoured owl" in prompt.text
    assert "- Ember: Ember is a cheerful, curious spirit" in prompt.text
    assert "\nEmber:" in prompt.stop  # Sage may not write Ember's lines
    assert "<|im_start|>user\nEmber: *The fire crackles" in prompt.text  # Ember's greeting, named, not Sage's turn
    assert prompt.text.endswith("You: Good evening, both of you.<|im_end|>\n<|im_start|>assistant\n")
    assert "Ember is a cheerful" in second.job.prompt.built.text.split("Also in this chat")[0]  # Ember's turn
    saved = on_disk(conv)
    assert saved["group"] == {"members": ["Ember", "Sage"], "turns": "round-robin"}
    assert [m.get("name") for m in saved["messages"] if m["role"] == "assistant"] == ["Ember", "Sage", "Ember"]


def test_the_authors_note_reaches_the_prompt_at_its_depth(conversation):
    options = ChatOptions(mode="chat-instruct", character="Ember")
    conv = conversation(options)
    conv.set_authors_note(AuthorsNote("Reply in exactly one sentence.", depth=1))
    reply = conv.send("Tell me about the cottage.", options, SHORT)
    run(conv, reply)
    assert ("<|im_start|>system\nReply in exactly one sentence.<|im_end|>\n"
            "<|im_start|>user\nTell me about the cottage.<|im_end|>") in reply.job.prompt.built.text
    assert on_disk(conv)["authors_note"] == {"text": "Reply in exactly one sentence.", "depth": 1, "enabled": True}


def test_instruct_mode_refuses_a_group_reply_in_one_line_and_keeps_the_chat(conversation):
    options = ChatOptions(mode="chat", character="Ember")
    conv = conversation(options)
    conv.start_group(make_group(["Ember", "Sage"]), options)
    before = [dict(m) for m in conv.messages]
    with pytest.raises(GroupError, match=r"^group chats need the chat or chat-instruct mode \(instruct mode"):
        conv.send("Hello?", ChatOptions(mode="instruct", character="Ember"), SHORT)
    assert conv.messages == before and conv.history.group is not None
    with pytest.raises(GroupError, match="need the chat or chat-instruct mode"):
        conv.start_group(make_group(["Ember", "Sage"]), ChatOptions(mode="instruct"))
