"""Search across chats: every word of the query, any case, in a title or a message; the
hit shown with the words around it; newest first; damaged files left out."""
from __future__ import annotations

import os

import pytest

from webui.chat.histories import HistoryStore
from webui.chat.search import CONTEXT_CHARS, search_chats
from webui.userdata.folders import UserData


@pytest.fixture
def user_data(tmp_path):
    return UserData.at(tmp_path)


def chat(user_data, character, *texts, title=None, age=0):
    store = HistoryStore(user_data.histories)
    h = store.new(character)
    for i, text in enumerate(texts):
        h.messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    if title:
        h.title, h.titled_by_user = title, True
    store.save(h)
    path = user_data.histories / character / f"{h.id}.json"
    stamp = path.stat().st_mtime - age
    os.utime(path, (stamp, stamp))
    return h


def test_finds_words_in_any_message_any_case_across_characters(user_data):
    a = chat(user_data, "Ember", "hello", "The Lighthouse keeper trims the wick.", age=10)
    b = chat(user_data, "Seraphina", "Any lighthouses near the glade?", "No, only trees.")
    chat(user_data, "Ember", "nothing to see here")
    hits = search_chats(user_data, "LIGHTHOUSE")
    assert [(h.character, h.chat_id) for h in hits] == [("Seraphina", b.id), ("Ember", a.id)]  # newest first
    assert hits[1].where == "assistant"
    assert (hits[1].before, hits[1].match, hits[1].after) == ("The ", "Lighthouse", " keeper trims the wick.")
    assert hits[1].key == f"Ember/{a.id}"
    assert "Ember" in hits[1].label and "“The Lighthouse keeper" in hits[1].label


def test_every_word_must_appear_somewhere_in_the_chat(user_data):
    h = chat(user_data, "Ember", "tell me about foxes", "Foxes hunt at dusk in the snow.")
    assert [x.chat_id for x in search_chats(user_data, "fox snow")] == [h.id]
    assert search_chats(user_data, "fox desert") == []
    # The message that holds the most words shows the hit.
    assert search_chats(user_data, "fox snow")[0].where == "assistant"


def test_title_matches_and_context_is_cut_with_ellipses(user_data):
    chat(user_data, "Ember", "hi", title="Campfire stories")
    assert search_chats(user_data, "campfire")[0].where == "title"
    long = "word " * 40 + "needle\n\n in the " + "hay " * 40
    chat(user_data, "Ember", long)
    hit = search_chats(user_data, "needle")[0]
    assert hit.before.startswith("…") and hit.after.endswith("…") and "\n" not in hit.snippet
    assert len(hit.before) <= CONTEXT_CHARS + 1 and hit.after.startswith(" in the hay")


def test_words_json_escapes_are_still_found(user_data):
    h = chat(user_data, "Ember", 'she said "hello"\tand left', "naïve café")
    assert [x.chat_id for x in search_chats(user_data, '"hello"')] == [h.id]
    assert [x.chat_id for x in search_chats(user_data, "CAFÉ")] == [h.id]


def test_limit_empty_query_damaged_and_foreign_files(user_data):
    for i in range(5):
        chat(user_data, "Ember", f"apple number {i}", age=i)
    assert len(search_chats(user_data, "apple", limit=3)) == 3
    assert search_chats(user_data, "   ") == []
    (user_data.histories / "Ember" / "20260101-000000-abcdef.json").write_text("{apple broken")
    (user_data.histories / "Ember" / "notes.json").write_text('{"title": "apple"}')
    assert len(search_chats(user_data, "apple")) == 5
    assert search_chats(UserData.at(user_data.root / "nobody"), "apple") == []


def test_other_letters_match_by_their_lowercase(user_data):
    h = chat(user_data, "Ember", "Die Straße ist lang", "Ærø")
    assert [x.chat_id for x in search_chats(user_data, "STRASSE")] == []  # not the same word
    assert [x.chat_id for x in search_chats(user_data, "straße")] == [h.id]
    assert [x.chat_id for x in search_chats(user_data, "ærø")] == [h.id]
