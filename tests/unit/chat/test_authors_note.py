"""The author's note (chat/authors_note.py): inserted a fixed depth from the end by the
prompt builder in every mode, off when switched off or empty, validated in one line,
and kept in the chat file. Prompts are built with SmolLM2's real tokenizer."""
from __future__ import annotations

import json

import pytest

from loaders.fields import SettingError
from webui.characters.character import Character
from webui.chat.authors_note import AuthorsNote, make_note, with_note
from webui.chat.context import TokenCounter
from webui.chat.histories import HistoryStore
from webui.chat.prompts import ChatRequest, build_chat_prompt
from webui.chat.templates import BUILTIN_TEMPLATES

NOTE = "Answer in rhymes."
MSGS = [{"role": "user", "content": f"m{i}"} if i % 2 == 0 else {"role": "assistant", "content": f"m{i}"}
        for i in range(5)]  # m0 (user) .. m4 (user)


@pytest.fixture
def counter(tokenizer):
    return TokenCounter(tokenizer)


@pytest.mark.parametrize("depth, before", [(0, None), (1, "m4"), (2, "m3"), (4, "m1"), (9, "m0")])
def test_the_note_goes_depth_messages_from_the_end(depth, before):
    out = with_note(MSGS, AuthorsNote(NOTE, depth))
    i = next(i for i, m in enumerate(out) if m["content"] == NOTE)
    assert out[i]["role"] == "system"
    assert (out[i + 1]["content"] if i + 1 < len(out) else None) == before
    assert [m for m in out if m["content"] != NOTE] == MSGS


def test_no_note_when_it_is_off_or_empty_and_continuing_keeps_the_reply_last():
    assert with_note(MSGS, AuthorsNote(NOTE, 0, enabled=False)) == MSGS
    assert with_note(MSGS, AuthorsNote("  ", 0)) == MSGS
    assert with_note(MSGS, None) == MSGS
    assert with_note(MSGS, AuthorsNote(NOTE, 0), continuing=True)[-2]["content"] == NOTE


def test_a_bad_note_is_refused_in_one_line():
    with pytest.raises(SettingError, match="depth must be at most 100"):
        make_note(NOTE, 101, True)
    with pytest.raises(SettingError, match="depth must be at least 0"):
        make_note(NOTE, -1, True)
    with pytest.raises(SettingError, match="text must be at most 2,000 characters"):
        make_note("x" * 2001, 1, True)
    assert make_note(NOTE, "2", True) == AuthorsNote(NOTE, 2)


def test_instruct_prompt_has_the_note_as_a_system_turn_at_its_depth(counter):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Tell me a story"}]
    request = ChatRequest(msgs, template=BUILTIN_TEMPLATES["ChatML"], authors_note=AuthorsNote(NOTE, 1))
    prompt = build_chat_prompt(request, counter, None, 1024, 64)
    text = prompt.text
    # The budget view under the reply has the note on a line of its own, and still adds up.
    assert prompt.budget.part("Author's note").tokens == counter.count(NOTE) > 0
    assert sum(p.tokens for p in prompt.budget.parts) == prompt.budget.prompt_tokens
    assert ("<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>system\nAnswer in rhymes.<|im_end|>\n"
            "<|im_start|>user\nTell me a story<|im_end|>\n<|im_start|>assistant\n") in text
    depth0 = ChatRequest(msgs, template=BUILTIN_TEMPLATES["ChatML"], authors_note=AuthorsNote(NOTE, 0))
    assert build_chat_prompt(depth0, counter, None, 1024, 64).text.endswith(
        "Tell me a story<|im_end|>\n<|im_start|>system\nAnswer in rhymes.<|im_end|>\n<|im_start|>assistant\n")


def test_chat_mode_transcript_has_the_note_line_at_its_depth(counter):
    ember = Character(name="Ember", context="Ember is a hearth spirit.")
    msgs = [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}]
    request = ChatRequest(msgs, mode="chat", character=ember, authors_note=AuthorsNote(NOTE, 1))
    text = build_chat_prompt(request, counter, None, 1024, 64).text
    assert text.endswith("Ember: Hello\nSystem: Answer in rhymes.\nYou: Hi\nEmber:")


def test_the_note_is_kept_in_the_chat_file_and_old_files_have_none(tmp_path):
    store = HistoryStore(tmp_path)
    history = store.new("Ember")
    history.messages.append({"role": "user", "content": "Hi"})
    history.authors_note = AuthorsNote(NOTE, 3, enabled=False)
    store.save(history)
    path = tmp_path / "Ember" / f"{history.id}.json"
    data = json.loads(path.read_text())
    assert data["authors_note"] == {"text": NOTE, "depth": 3, "enabled": False}
    assert store.load("Ember", history.id).authors_note == history.authors_note
    for old in ({}, {"authors_note": {"depth": "deep"}}):  # written before notes; a damaged one
        data.pop("authors_note", None)
        path.write_text(json.dumps({**data, **old}))
        assert store.load("Ember", history.id).authors_note is None
