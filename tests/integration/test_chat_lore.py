"""Lorebooks and the context budget on the real model: a character's own lorebook
(its card's character_book) and a standalone one the chat chose reach the prompt when
their keys come up; the reply keeps its budget, saved with the chat and read back;
a chat file written before these keys loads unchanged."""
from __future__ import annotations

import dataclasses
import json

import pytest

from webui.characters.character import Character
from webui.chat.budget import HISTORY_KEPT, LOREBOOK, ContextBudget
from webui.chat.conversation import ChatOptions

BOOK = {"entries": [{"keys": ["dragon"], "content": "LORE-DRAGON: dragons sleep under the Ash Hills.",
                     "name": "Dragons", "enabled": True, "insertion_order": 10, "extensions": {}}]}
WORLD = {"entries": {"0": {"key": ["castle"], "content": "LORE-CASTLE: the gates close at dusk.",
                           "comment": "Castle", "order": 5, "position": 1}}}


@pytest.fixture
def lorekeeper(hearth):
    saved = hearth.characters.save(Character(name="Lorekeeper", context="Lorekeeper knows old tales.",
                                             card={"character_book": BOOK}))
    yield saved
    hearth.characters.delete(saved.name)


def run(conv, text, options, params):
    reply = conv.send(text, options, dataclasses.replace(params, max_new_tokens=2))  # the prompt is what is tested
    answer, _ = reply.job.result()
    conv.update(reply, answer)
    conv.finish(reply, failed=False)
    return reply.job.prompt.built


def test_lorebooks_reach_the_prompt_and_the_budget_is_kept(hearth, lorekeeper, greedy):
    options = ChatOptions(mode="chat-instruct", character=lorekeeper.name)
    conv = hearth.conversation(options)
    built = run(conv, "Hello there.", options, greedy)
    assert "LORE-DRAGON" not in built.text and built.budget.part(LOREBOOK) is None

    conv.lorebooks.import_file(json.dumps(WORLD).encode(), "World")
    conv.choose_lorebooks(["World"])
    built = run(conv, "Tell me about the dragons of the castle.", options, greedy)
    text = built.text
    assert text.index("LORE-DRAGON") < text.index("Lorekeeper knows") < text.index("LORE-CASTLE")
    budget = built.budget
    assert budget.part(LOREBOOK).detail == "Castle, Dragons"
    assert budget.prompt_tokens == len(built.ids) and budget.room_left == 2048 - len(built.ids)
    assert budget.part(HISTORY_KEPT).detail == "3 messages"  # no greeting: hello, its reply, the question

    # Saved with the reply and with the chat; read back as it was.
    reopened = hearth.histories.load(conv.history.character, conv.history.id)
    assert reopened.lorebooks == ["World"]
    assert ContextBudget.from_dict(reopened.messages[-1]["context_budget"]) == budget
    (conv.lorebooks.folder / "World.json").unlink()


def test_a_chat_saved_before_lorebooks_loads_unchanged(hearth, tmp_path):
    folder = hearth.histories.root / "Lorekeeper"
    folder.mkdir(parents=True, exist_ok=True)
    old = {"version": 1, "id": "20261130-120000-abcdef", "character": "Lorekeeper", "title": "Old",
           "mode": "chat", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}],
           "created": 1.0, "updated": 2.0, "titled_by_user": False}
    (folder / "20261130-120000-abcdef.json").write_text(json.dumps(old))
    chat = hearth.histories.load("Lorekeeper", "20261130-120000-abcdef")
    assert chat.messages == old["messages"] and chat.lorebooks == []
    (folder / "20261130-120000-abcdef.json").unlink()
