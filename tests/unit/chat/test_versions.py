"""Reply versions, reply records, branches and the impersonate prompt shape: the pure
rules, and chat files written before any of them read unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from loaders.params import GenerationParams
from webui.chat.branches import branch
from webui.chat.histories import FORMAT_VERSION, HistoryError, HistoryStore
from webui.chat.prompts import IMPERSONATE_MARK, ChatRequest
from webui.chat.provenance import describe, file_identity, record_chat, record_params, valid_record, with_seed
from webui.chat.versions import VersionError, add_version, choose, settle, swipe

RECORD = {"model": {"name": "m.gguf", "size": 10, "hash": "abc"}, "loader": "llama.cpp",
          "params": {"seed": 5, "temperature": 0.7, "stop": ["\n\n"], "no_such_sampler": 1},
          "template": "ChatML", "mode": "instruct", "user_name": "You", "system_prompt": "Be brief.",
          "extensions": ["example"]}


def reply(text: str, **extra) -> dict:
    return {"role": "assistant", "content": text, **extra}


def test_versions_add_choose_swipe_and_settle():
    messages = [{"role": "user", "content": "hi"}, reply("one", provenance={"x": 1})]
    earlier = messages.pop()
    messages.append(reply("two"))
    settle(messages, earlier)
    last = messages[-1]
    assert last["content"] == "two" and last["version"] == 1 and "provenance" not in last
    assert [v["content"] for v in last["versions"]] == ["one", "two"]
    assert swipe(messages, -1) == (1, 2) and last["content"] == "one" and last["provenance"] == {"x": 1}
    assert swipe(messages, -1) == (1, 2)  # no wrapping round
    last["content"] = "one, edited"  # an edit of the shown version is kept when switching
    assert swipe(messages, 1) == (2, 2) and last["content"] == "two"
    choose(last, 0)
    assert last["content"] == "one, edited"
    with pytest.raises(VersionError, match="no version 3"):
        choose(last, 2)

    # A regenerate that left nothing puts the reply back as it was.
    messages.append(messages.pop())
    kept = messages.pop()
    settle(messages, kept)
    assert messages[-1] is kept


def test_swipe_refuses_in_one_line():
    with pytest.raises(VersionError, match="one version"):
        swipe([{"role": "user", "content": "a"}, reply("b")], 1)
    with pytest.raises(VersionError, match="does not end with"):
        swipe([{"role": "user", "content": "a"}], 1)
    with pytest.raises(VersionError, match="does not end with"):
        swipe([reply("greeting")], 1)  # a greeting alone is not a reply


def test_versions_round_trip_through_the_chat_file(tmp_path):
    store = HistoryStore(tmp_path)
    history = store.new("Ember")
    first = reply("one", provenance=RECORD)
    history.messages = [{"role": "user", "content": "hi"}, reply("two")]
    add_version(history.messages[-1], first)
    choose(history.messages[-1], 0)
    store.save(history)
    loaded = store.load("Ember", history.id).messages[-1]
    assert loaded == history.messages[-1]
    assert loaded["content"] == "one" and loaded["provenance"]["model"]["hash"] == "abc"


def test_a_chat_written_before_versions_reads_unchanged_and_damaged_versions_are_left_out(tmp_path):
    folder = tmp_path / "Ember"
    folder.mkdir()
    old = {"version": FORMAT_VERSION, "id": "20250101-000000-abcdef", "character": "Ember", "title": "Old",
           "mode": "chat", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
           "created": 1.0, "updated": 2.0, "titled_by_user": False}
    (folder / "20250101-000000-abcdef.json").write_text(json.dumps(old))
    history = HistoryStore(tmp_path).load("Ember", "20250101-000000-abcdef")
    assert history.messages == old["messages"] and history.branched_from is None

    old["messages"][-1] |= {"versions": [{"content": "a"}, {"content": 3}], "version": 0,
                            "provenance": {"model": "not a record"}}
    old["branched_from"] = "nonsense"
    (folder / "20250101-000000-abcdef.json").write_text(json.dumps(old))
    history = HistoryStore(tmp_path).load("Ember", "20250101-000000-abcdef")
    assert history.messages[-1] == {"role": "assistant", "content": "yo"} and history.branched_from is None


def test_branch_copies_up_to_a_message_and_the_list_shows_its_source(tmp_path):
    store = HistoryStore(tmp_path)
    source = store.new("Ember")
    source.messages = [{"role": "user", "content": "first"}, reply("r1"), {"role": "user", "content": "second"}]
    store.save(source)
    new = branch(store, source, 1)
    assert [m["content"] for m in new.messages] == ["first", "r1"]
    new.messages[1]["content"] = "changed"
    assert source.messages[1]["content"] == "r1"  # copies, not the same dicts
    again = store.load("Ember", new.id)
    assert again.branched_from == {"id": source.id, "title": "first", "message": 1}
    label = next(s.label for s in store.list("Ember") if s.id == new.id)
    assert label.startswith("Branch of first") and "⑂ from “first”" in label
    with pytest.raises(HistoryError, match="no message 4"):
        branch(store, source, 3)


def test_the_seed_is_picked_before_the_reply():
    assert with_seed(GenerationParams(seed=9)).seed == 9
    seeds = {with_seed(GenerationParams(seed=-1)).seed for _ in range(20)}
    assert all(0 <= s < 2**32 for s in seeds) and len(seeds) > 1


def test_a_record_reads_back_into_samplers_and_chat_controls():
    assert valid_record(RECORD) is RECORD and valid_record({"model": {}}) is None
    params = record_params(RECORD)  # a sampler this Hearth does not know is left out
    assert params.seed == 5 and params.temperature == 0.7 and params.stop == ("\n\n",)
    assert record_chat(RECORD) == {"mode": "instruct", "template": "ChatML", "user_name": "You",
                                   "system_prompt": "Be brief."}
    text = describe(RECORD)
    assert "m.gguf" in text and "Seed** 5" in text and "example" in text and "'\\n\\n'" in text
    assert describe(None).startswith("No record")


def test_the_model_hash_is_partial_and_cached(tmp_path: Path):
    model = tmp_path / "m.gguf"
    model.write_bytes(bytes(range(256)) * 20_000)  # 5 MB: three 1 MiB windows, not the whole file
    size, digest = file_identity(model)
    assert size == 5_120_000 and len(digest) == 12 and file_identity(model) == (size, digest)
    data = bytearray(model.read_bytes())
    data[-1] ^= 1  # the end window changed
    model.write_bytes(bytes(data))
    assert file_identity(model)[1] != digest
    assert file_identity("http://engine:8080/v1")[0] == 0  # a remote engine: its address


def test_impersonate_needs_the_users_draft_last():
    with pytest.raises(ValueError, match="draft"):
        ChatRequest([reply("hi")], impersonate=True)
    assert "\ue000" in IMPERSONATE_MARK  # a private-use character no real text holds
