"""Chat histories: plain JSON files per character, written atomically after every
message. The kill -9 tests run the writer in a real subprocess and kill it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support import ROOT
from webui.chat.histories import HistoryError, HistoryStore
from webui.userdata.atomic import write_text_atomic


@pytest.fixture
def store(tmp_path):
    return HistoryStore(tmp_path / "histories")


def test_save_load_round_trip_as_plain_json(store):
    h = store.new("Ember", "chat", greeting="Hello!")
    h.messages.append({"role": "user", "content": "Tell me about fire 🔥"})
    store.save(h)
    path = store.root / "Ember" / f"{h.id}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["messages"][1]["content"] == "Tell me about fire 🔥"
    assert data["title"] == "Tell me about fire 🔥"  # named after the first message
    back = store.load("Ember", h.id)
    assert (back.messages, back.mode, back.title) == (h.messages, "chat", h.title)


def test_each_character_has_its_own_list_newest_first(store):
    ids = []
    for text in ("first", "second", "third"):
        h = store.new("Ember")
        h.messages.append({"role": "user", "content": text})
        store.save(h)
        ids.append(h.id)
        time.sleep(0.01)
    other = store.new("Ada")
    other.messages.append({"role": "user", "content": "elsewhere"})
    store.save(other)
    assert [c.title for c in store.list("Ember")] == ["third", "second", "first"]
    assert [c.title for c in store.list("Ada")] == ["elsewhere"]
    assert store.list("Nobody") == []
    label = store.list("Ember")[0].label
    assert label.startswith("third · ") and label.endswith(" · 1 messages")


def test_rename_and_delete(store):
    h = store.new("Ember")
    h.messages.append({"role": "user", "content": "hi"})
    store.save(h)
    assert store.list("Ember")[0].title == "hi"
    store.rename(h, "  Fireside   talk ")
    assert store.load("Ember", h.id).title == "Fireside talk"
    assert store.list("Ember")[0].title == "Fireside talk"  # the list sees the change
    h.messages.append({"role": "user", "content": "more"})
    store.save(h)
    assert store.load("Ember", h.id).title == "Fireside talk"  # a user's name sticks
    with pytest.raises(HistoryError, match="empty"):
        store.rename(h, "   ")
    store.delete("Ember", h.id)
    assert store.list("Ember") == []
    with pytest.raises(HistoryError, match="no chat"):
        store.delete("Ember", h.id)


@pytest.mark.parametrize("character,chat_id,message", [
    ("../Ember", "20250101-000000-abcdef", "not a valid character name"),
    ("Ember", "../../settings", "not a chat id"),
    ("Ember", "20250101-000000-abcdef/../../x", "not a chat id"),
])
def test_names_and_ids_cannot_leave_the_folder(store, character, chat_id, message):
    with pytest.raises(HistoryError, match=message):
        store.load(character, chat_id)
    with pytest.raises(HistoryError, match=message):
        store.delete(character, chat_id)


def test_a_damaged_file_is_skipped_in_the_list_and_reported_on_open(store):
    good = store.new("Ember")
    good.messages.append({"role": "user", "content": "fine"})
    store.save(good)
    bad = store.root / "Ember" / "20200101-000000-000000.json"
    bad.write_text('{"messages": [{"role": "user"')
    assert [c.title for c in store.list("Ember")] == ["fine"]
    with pytest.raises(HistoryError, match="damaged"):
        store.load("Ember", "20200101-000000-000000")


def test_atomic_write_leaves_no_temp_files_and_replaces_whole(tmp_path):
    target = tmp_path / "a" / "f.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["f.json"]


WRITER = textwrap.dedent("""
    import sys
    from webui.chat.histories import HistoryStore
    store = HistoryStore(sys.argv[1])
    h = store.new("Ember")
    h.id = "20250101-000000-abcdef"
    n = 0
    while True:
        n += 1
        # Big messages make each save take long enough to be killed in the middle.
        h.messages.append({"role": "user" if n % 2 else "assistant", "content": f"{n}:" + "x" * 200_000})
        store.save(h)
        print(n, flush=True)
""")


def test_kill_9_while_saving_never_leaves_a_broken_file(tmp_path):
    """Kill the writer at many moments, mid-save included: the file always parses
    and holds a complete, consistent history."""
    path = tmp_path / "Ember" / "20250101-000000-abcdef.json"
    for delay in (0.15, 0.23, 0.31, 0.42):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline()  # at least one save done
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())
        msgs = data["messages"]
        assert msgs and all(m["content"].startswith(f"{i}:") for i, m in enumerate(msgs, 1))
        assert all(len(m["content"]) == len(f"{i}:") + 200_000 for i, m in enumerate(msgs, 1))
        leftovers = [p for p in path.parent.iterdir() if p != path]
        # A kill mid-save can leave a temp file; it is never mistaken for a chat.
        assert all(p.name.startswith(".") and p.suffix == ".tmp" for p in leftovers)
        assert [c.id for c in HistoryStore(tmp_path).list("Ember")] == ["20250101-000000-abcdef"]


CHATTER = textwrap.dedent("""
    import sys
    from loaders.params import GenerationParams
    from webui.chat.conversation import ChatOptions, Conversation
    from webui.hearth import Hearth
    hearth = Hearth(user_data_dir=sys.argv[1])
    hearth.load_model(None, "llama.cpp", {"n_ctx": 1024})
    options = ChatOptions(mode="chat", character="Ember")
    conv = hearth.conversation(options)
    reply = conv.send("Tell me about the fire.", options, GenerationParams(temperature=0, max_new_tokens=16))
    text, _ = reply.job.result()
    conv.update(reply, text)
    conv.finish(reply, failed=False)
    print("FIRST", conv.history.id, flush=True)
    reply = conv.send("Now a very long story, please.", options,
                      GenerationParams(temperature=0, max_new_tokens=2000, ignore_eos=True))
    for event in reply.job.events():
        print("STREAMING", flush=True)
        break
    reply.job.result()
""")


def test_kill_9_during_a_reply_loses_at_most_that_reply(tmp_path):
    """A real chat in a subprocess with the real model, killed while the second
    reply streams: everything before that reply is on disk, nothing is broken."""
    proc = subprocess.Popen([sys.executable, "-c", CHATTER, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["FIRST"], first
        assert proc.stdout.readline().strip() == "STREAMING"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    history = HistoryStore(tmp_path / "histories").load("Ember", first[1])
    roles = [m["role"] for m in history.messages]
    assert roles == ["assistant", "user", "assistant", "user"]  # greeting, Q, A, Q; the cut reply is gone
    assert history.messages[2]["content"].strip()
    assert history.messages[3]["content"] == "Now a very long story, please."
