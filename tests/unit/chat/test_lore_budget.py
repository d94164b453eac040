"""Lorebook entries in the prompt (keys in the recent messages, constant entries,
insertion order, the token budget, before/after the character) and the context budget
(its parts add up; what was dropped; the room left), with SmolLM2's real tokenizer."""
from __future__ import annotations

import json

import pytest

from webui.characters.character import Character
from webui.characters.lorebook import Lorebook, LorebookError, LoreEntry
from webui.characters.lorebooks import LorebookStore
from webui.characters.store import CharacterStore
from webui.chat.attachments import pasted, prompt_messages
from webui.chat.budget import CHARACTER, HISTORY_KEPT, LOREBOOK, SYSTEM_PROMPT, ContextBudget, PromptShare
from webui.chat.budget_shares import attachment_shares
from webui.chat.context import TokenCounter
from webui.chat.group import GroupTurn
from webui.chat.lore import (
    character_lorebook_names,
    chat_lorebooks,
    select_lore,
    triggered,
    with_lorebook_names,
)
from webui.chat.prompts import ChatRequest, build_chat_prompt

DRAGONS = LoreEntry(keys=("dragon",), content="LORE-DRAGONS sleep under the Ash Hills.", name="Dragons",
                    position="after_char", insertion_order=20)
CASTLE = LoreEntry(keys=("Castle",), content="LORE-CASTLE gates close at dusk.", case_sensitive=True,
                   insertion_order=10)
WORLD = LoreEntry(keys=(), content="LORE-WORLD magic is rare.", constant=True, name="World", insertion_order=30)
GOLD = LoreEntry(keys=("dragon",), secondary_keys=("gold",), selective=True, content="LORE-HOARD of gold.",
                 name="Hoard")
OFF = LoreEntry(keys=("dragon",), content="LORE-OFF", enabled=False)
BOOK = Lorebook("Realm", (DRAGONS, CASTLE, WORLD, GOLD, OFF))
EMBER = Character(name="Ember", context="EMBER-PERSONA is a hearth spirit.")


@pytest.fixture
def counter(tokenizer):
    return TokenCounter(tokenizer)


def said(*texts: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def test_keys_in_recent_messages_trigger_entries_in_insertion_order():
    hits = triggered([BOOK], said("Tell me about DRAGONS.", "ok", "And the Castle?"))
    # Scan depth 2 (the default): "DRAGONS" three messages back is not seen.
    assert [e.label for _, e in hits] == ["Castle", "World"]
    hits = triggered([BOOK], said("ok", "Tell me about dragons and their gold", "the castle"))
    # "castle" is not "Castle" for a case-sensitive entry; a selective entry needs "gold" too.
    assert [e.label for _, e in hits] == ["Dragons", "World", "Hoard"]
    deep = Lorebook("Deep", (DRAGONS,), scan_depth=3)
    assert triggered([deep], said("dragons", "ok", "hm"))


def test_the_token_budget_keeps_entries_in_order(counter):
    msgs = said("dragons and gold in the Castle")
    full = select_lore([BOOK], msgs, counter.count, 2048)
    assert [i.label for i in full.inserted] == ["Castle", "Dragons", "World", "Hoard"]
    castle_and_dragons = sum(i.tokens for i in full.inserted[:2])
    tight = Lorebook("Realm", BOOK.entries, token_budget=castle_and_dragons)
    cut = select_lore([tight], msgs, counter.count, 2048)
    assert [i.label for i in cut.inserted] == ["Castle", "Dragons"]
    assert cut.over_budget == ("World", "Hoard")
    # All books together get at most a quarter of the context.
    assert select_lore([BOOK], msgs, counter.count, 40).tokens <= 10


@pytest.mark.parametrize("mode", ["chat", "chat-instruct"])
def test_entries_go_before_or_after_the_character(counter, mode):
    request = ChatRequest(said("Any dragons in the Castle?"), mode=mode, character=EMBER, lorebooks=[BOOK])
    prompt = build_chat_prompt(request, counter, None, 2048, 64)
    text = prompt.text
    assert text.index("LORE-CASTLE") < text.index("EMBER-PERSONA") < text.index("LORE-DRAGONS")
    assert "LORE-OFF" not in text and "LORE-HOARD" not in text
    assert [i.label for i in prompt.lore.inserted] == ["Castle", "Dragons", "World"]
    lore = prompt.budget.part(LOREBOOK)
    assert lore.detail == "Castle, Dragons, World" and lore.tokens == prompt.lore.tokens > 0


def test_without_lorebooks_the_prompt_is_as_before(counter):
    plain = build_chat_prompt(ChatRequest(said("hi"), mode="chat-instruct", character=EMBER), counter, None, 2048, 64)
    empty = Lorebook("Empty", ())
    with_book = build_chat_prompt(ChatRequest(said("hi"), mode="chat-instruct", character=EMBER,
                                              lorebooks=[empty, BOOK]), counter, None, 2048, 64)
    # Only the constant entry is triggered by "hi": it alone is added, before the persona.
    assert with_book.text == plain.text.replace("EMBER-PERSONA", f"{WORLD.content}\n\nEMBER-PERSONA", 1)
    assert "LORE-" not in plain.text and plain.budget.part(LOREBOOK) is None


def test_the_budget_adds_up_and_counts_what_was_dropped(counter):
    msgs = said(*[f"message {i} " + "word " * 30 for i in range(40)])
    request = ChatRequest(msgs, mode="instruct", system_prompt="SYSTEM-RULES be brief.",
                          shares=[PromptShare("Attachments", msgs[-1]["content"]),
                                  PromptShare("Old file", msgs[0]["content"])])
    prompt = build_chat_prompt(request, counter, None, 512, 64)
    budget = prompt.budget
    assert prompt.dropped > 0 and budget.dropped_messages == prompt.dropped
    assert budget.dropped_tokens > 30 * prompt.dropped  # ~31 tokens each
    assert sum(p.tokens for p in budget.parts) == budget.prompt_tokens == len(prompt.ids)
    assert budget.room_left == 512 - len(prompt.ids) >= 64
    names = [p.name for p in budget.parts]
    assert names[:2] == [SYSTEM_PROMPT, HISTORY_KEPT] and "Attachments" in names and CHARACTER not in names
    assert budget.part(HISTORY_KEPT).detail == f"{len(msgs) - prompt.dropped} messages"
    # The share moved out of the history it sits in.
    assert budget.part("Attachments").tokens == counter.count(msgs[-1]["content"])
    assert budget.part("Old file") is None  # its message was dropped: not in this prompt
    # Saved with the reply and read back; a damaged one is no budget, not an error.
    assert ContextBudget.from_dict(budget.to_dict()) == budget
    assert ContextBudget.from_dict({"parts": "x"}) is None


@pytest.mark.parametrize("mode", ["chat", "chat-instruct"])
def test_a_group_speakers_lorebook_goes_around_the_members(counter, mode):
    sage = Character(name="Sage", context="SAGE-PERSONA reads the stars.")
    request = ChatRequest(said("Any dragons in the Castle?"), mode=mode, character=EMBER,
                          group=GroupTurn(EMBER, (sage,)), lorebooks=[BOOK])
    text = build_chat_prompt(request, counter, None, 2048, 64).text
    assert text.index("LORE-CASTLE") < text.index("EMBER-PERSONA") < text.index("SAGE-PERSONA") \
        < text.index("LORE-DRAGONS")


def test_standalone_books_chosen_for_the_character_and_the_chat(tmp_path):
    store = LorebookStore(tmp_path / "lorebooks")
    for name in ("Alpha", "Beta"):
        store.import_file(json.dumps({"entries": [{"keys": ["a"], "content": name}]}).encode(), name)
    characters = CharacterStore(tmp_path / "shipped", tmp_path / "characters")
    own = {"entries": [{"keys": ["x"], "content": "own"}]}
    ember = characters.save(with_lorebook_names(Character(name="Ember", card={"character_book": own}),
                                                ["Alpha", "Gone"]))
    assert character_lorebook_names(characters.load("Ember")) == ["Alpha", "Gone"]  # saved with it
    books = chat_lorebooks(ember, ["Beta", "Alpha"], store)
    # Its card's own, the character's (a deleted one skipped), then the chat's; each once.
    assert [b.name for b in books] == ["Ember's lorebook", "Alpha", "Beta"]
    (store.folder / "Bad.json").write_text("{")
    with pytest.raises(LorebookError, match="Bad.json: the lorebook is not valid JSON"):
        chat_lorebooks(None, ["Bad"], store)


def test_attached_files_get_their_own_line(counter):
    history = said("hi", "hello") + [{"role": "user", "content": "What does it say?",
                                      "attachments": [pasted("ATTACHED " + "notes " * 40).to_dict()]}]
    request = ChatRequest(prompt_messages(history), shares=attachment_shares(history))
    budget = build_chat_prompt(request, counter, None, 2048, 64).budget
    files = budget.part("Attachments")
    assert files is not None and files.tokens > 40
    assert sum(p.tokens for p in budget.parts) == budget.prompt_tokens
    assert attachment_shares(said("no files")) == ()
