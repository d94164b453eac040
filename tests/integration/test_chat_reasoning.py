"""A reasoning model's thinking in the chat: kept apart from the reply in the history
and on disk, shown as a folded Thinking block above it, and left out of later turns'
prompts. SmolLM2 does not think, so a GBNF grammar makes the real model write
<think>...</think> before its answer."""
from __future__ import annotations

import dataclasses
import json

import pytest

from loaders.params import GenerationParams
from webui.characters.store import CharacterStore
from webui.chat.conversation import ChatOptions
from webui.chat.histories import HistoryStore
from webui.chat.templates import CUSTOM_TEMPLATE
from webui.ui.chat_tab import shown
from webui.userdata.folders import SHIPPED_CHARACTERS

THINKING = 'root ::= "<think>" [a-z ]{4,12} "</think>" [A-Za-z ]{2,10}'
THINK = GenerationParams(temperature=0.0, seed=1, max_new_tokens=24, grammar=THINKING)


@pytest.fixture
def core(hearth, tmp_path, monkeypatch):
    monkeypatch.setattr(hearth, "histories", HistoryStore(tmp_path / "histories"))
    monkeypatch.setattr(hearth, "characters", CharacterStore(SHIPPED_CHARACTERS, tmp_path / "characters"))
    # Conversations read the user's space (one space when there are no accounts).
    monkeypatch.setattr(hearth, "_single", dataclasses.replace(hearth._single, histories=hearth.histories, characters=hearth.characters))
    return hearth


def test_thinking_is_kept_apart_shown_folded_and_not_fed_back(core):
    options = ChatOptions(mode="instruct")
    conv = core.conversation(options)
    reply = conv.send("Say hi", options, THINK)
    text, _ = reply.job.result()
    assert text.startswith("<think>")  # what the model wrote, markers and all
    conv.update(reply, text[:len("<think>") + 3])  # mid-thinking, as the Chat tab streams it
    assert shown(conv)[-1]["metadata"] == {"title": "Thinking", "status": "pending"}
    conv.update(reply, text)
    conv.finish(reply, failed=False)
    message = conv.messages[-1]
    thought = message["reasoning_content"]
    assert 4 <= len(thought) <= 12 and "<think>" not in message["content"] and message["content"]
    # The context budget view folds in after the reply (chat/budget.py); it is not the thinking.
    titles = [m.get("metadata", {}).get("title") for m in shown(conv)]
    assert titles[:3] == [None, "Thinking", None]
    assert all(t.startswith("Context") for t in titles[3:])
    assert shown(conv)[1]["content"] == thought and shown(conv)[2]["content"] == message["content"]
    # Saved and opened again with the thinking apart.
    path = core.histories.root / conv.history.character / f"{conv.history.id}.json"
    assert json.loads(path.read_text())["messages"][-1]["reasoning_content"] == thought
    conv.open(conv.history.id)
    assert conv.messages[-1]["reasoning_content"] == thought
    # The next turn's prompt has the earlier answer but not its thinking.
    second = conv.send("Again", options, dataclasses.replace(THINK, grammar="", max_new_tokens=2))
    second.job.result()
    prompt = second.job.prompt.built.text
    assert message["content"] in prompt and thought not in prompt and "<think>" not in prompt


# ChatML whose generation prompt opens the thinking, as DeepSeek-R1's template does.
OPENS_THINKING = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}")


def test_a_template_that_opens_the_thinking_starts_the_reply_inside_it(core):
    options = ChatOptions(mode="instruct", template=CUSTOM_TEMPLATE, custom_template=OPENS_THINKING)
    conv = core.conversation(options)
    params = dataclasses.replace(THINK, grammar='root ::= [a-z ]{4,12} "</think>" [A-Za-z ]{2,10}')
    reply = conv.send("Say hi", options, params)
    text, _ = reply.job.result()
    conv.update(reply, text)
    conv.finish(reply, failed=False)
    thought, answer = text.split("</think>")
    assert conv.messages[-1]["reasoning_content"] == thought.strip()
    assert conv.messages[-1]["content"] == answer.strip() and answer.strip()
