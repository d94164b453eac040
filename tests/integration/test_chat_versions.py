"""Reply versions (swipes), Reproduce, branches and impersonate on the real SmolLM2
model through llama.cpp: what the chat shows, what the next prompt holds, what lands
on disk."""
from __future__ import annotations

import json

import pytest

from loaders.params import GenerationParams
from webui.characters.store import CharacterStore
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.histories import HistoryStore
from webui.chat.provenance import ReproduceError, file_identity
from webui.chat.template_fallback import strip_markers
from webui.chat.versions import VersionError
from webui.userdata.folders import SHIPPED_CHARACTERS

GREEDY = GenerationParams(temperature=0.0, seed=1, max_new_tokens=8)
# Sampling with a random seed: only the recorded seed makes the same text again.
SAMPLED = GenerationParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=-1, max_new_tokens=12)
OPTIONS = ChatOptions(mode="instruct")


class Core:
    """The session's real model and queue, with this test's own folder for chats."""

    def __init__(self, hearth, root):
        self.hearth = hearth
        self.models = hearth.models
        self.histories = HistoryStore(root / "histories")
        self.characters = CharacterStore(SHIPPED_CHARACTERS, root / "characters")

    def conversation(self, options: ChatOptions) -> Conversation:
        return Conversation(self.characters, self.histories, self.hearth, self.hearth.extensions, options)


@pytest.fixture
def core(hearth, tmp_path):
    return Core(hearth, tmp_path)


def run(conv: Conversation, reply):
    text, _ = reply.job.result()
    conv.update(reply, text)
    conv.finish(reply, failed=False)


def saved(core, conv) -> dict:
    path = core.histories.root / conv.history.character / f"{conv.history.id}.json"
    return json.loads(path.read_text())


def test_regenerate_keeps_versions_and_the_chosen_one_is_what_later_turns_see(core):
    conv = core.conversation(OPTIONS)
    run(conv, conv.send("Name a colour.", OPTIONS, GREEDY))
    first = conv.messages[-1]["content"]
    run(conv, conv.regenerate(OPTIONS, GenerationParams(temperature=0.0, seed=1, max_new_tokens=4)))
    second = conv.messages[-1]["content"]
    assert second != first and first.startswith(second)  # the same greedy reply, cut at 4 tokens
    reply = conv.messages[-1]
    assert [v["content"] for v in reply["versions"]] == [first, second] and reply["version"] == 1

    assert conv.swipe(-1) == (1, 2)
    assert conv.messages[-1]["content"] == first
    assert conv.swipe(-1) == (1, 2)  # the first version is the first: the arrow stops there
    on_disk = saved(core, conv)["messages"][-1]
    assert on_disk["content"] == first and on_disk["version"] == 0
    assert core.histories.load(conv.history.character, conv.history.id).messages[-1]["content"] == first

    reply = conv.send("And another?", OPTIONS, GREEDY)
    run(conv, reply)
    prompt = reply.job.prompt.built.text
    assert first in prompt and f"{second}<|im_end|>" not in prompt  # only the chosen version is sent
    with pytest.raises(VersionError, match="one version"):
        conv.swipe(1)  # the new reply has one version


def test_a_failed_regenerate_keeps_the_reply(core):
    conv = core.conversation(OPTIONS)
    conv.history.messages += [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]
    before = [dict(m) for m in conv.messages]
    reply = conv.regenerate(OPTIONS, GREEDY)
    reply.job.stop()  # stopped before any text: the reply it replaced comes back as it was
    reply.job.result()
    conv.finish(reply, failed=False)
    assert conv.messages == before and "versions" not in conv.messages[-1]


def test_every_reply_records_what_made_it_and_reproduce_gives_the_same_text(core, default_model):
    conv = core.conversation(OPTIONS)
    run(conv, conv.send("Write one sentence about the sea.", OPTIONS, SAMPLED))
    record = conv.messages[-1]["provenance"]
    size, digest = file_identity(default_model)
    assert record["model"] == {"name": core.models.current.name, "size": size, "hash": digest}
    assert record["model"]["size"] == default_model.stat().st_size and len(digest) == 12
    assert record["loader"] == "llama.cpp" and record["library"].startswith("llama_cpp_python 0.3.")
    seed = record["params"]["seed"]
    assert 0 <= seed < 2**32  # the seed actually used, picked before the reply (the user's was -1)
    assert record["params"]["temperature"] == 1.0 and record["params"]["top_k"] == 0
    assert record["template_used"].startswith("Model's own") and record["mode"] == "instruct"
    assert record["extensions"] == []
    original = conv.messages[-1]["content"]

    run(conv, conv.reproduce())  # the record's samplers
    reply = conv.messages[-1]
    assert reply["version"] == 1 and reply["content"] == original
    assert reply["provenance"]["params"]["seed"] == seed
    assert saved(core, conv)["messages"][-1]["versions"][0]["provenance"]["params"]["seed"] == seed

    # Another model's record: one line naming the model the record needs, nothing changed.
    reply["provenance"] = {**record, "model": {"name": "other.Q8_0.gguf", "size": 7_000_000_000,
                                               "hash": "0123456789ab"}}
    with pytest.raises(ReproduceError, match=r"made by other\.Q8_0\.gguf \(7\.0 GB, 0123456789ab\); load it"):
        conv.reproduce()
    assert conv.reply is None and conv.messages[-1]["content"] == original


def test_branch_keeps_the_history_up_to_a_message_and_remembers_its_source(core):
    options = ChatOptions(mode="chat", character="Ember")
    conv = core.conversation(options)
    run(conv, conv.send("Hello!", options, GREEDY))
    source = conv.history
    conv.branch(1)  # the greeting and the user's message
    assert conv.history.id != source.id and len(conv.messages) == 2
    assert conv.messages == source.messages[:2] and conv.messages is not source.messages
    assert conv.history.branched_from == {"id": source.id, "title": source.title, "message": 1}
    labels = {s.id: s.label for s in conv.past_chats()}
    assert f"⑂ from “{source.title}”" in labels[conv.history.id]
    assert len(core.histories.load("Ember", source.id).messages) == 3  # the source is untouched
    run(conv, conv.regenerate(options, GREEDY))  # the branch goes on by itself
    assert conv.messages[-1]["role"] == "assistant" and conv.history.branched_from["id"] == source.id


@pytest.mark.parametrize("mode", ["instruct", "chat"])
def test_impersonate_writes_the_users_next_message(core, mode):
    options = ChatOptions(mode=mode, character="Ember")
    conv = core.conversation(options)
    conv.history.messages += [{"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello!"}]
    before = [dict(m) for m in conv.messages]
    job = conv.impersonate("I think", options, GREEDY)
    text, _ = job.result()
    prompt = job.prompt.built.text
    if mode == "instruct":
        assert prompt.endswith("<|im_start|>user\nI think")  # the user's turn left open
    else:
        assert prompt.endswith("\nYou: I think")
    assert strip_markers(text, job.prompt.built.stop).strip()  # the model wrote on
    assert conv.messages == before  # nothing added to the chat
