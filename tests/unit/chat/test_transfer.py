"""Chat import and export: each format read from a fixture in its program's own shape
(tests/fixtures/chats/README.md says where each comes from), the malformed files each
refused with one line and nothing written, and an export that imports back unchanged."""
from __future__ import annotations

import json
import time

import pytest

from tests.support import ROOT
from webui.chat.histories import HistoryStore
from webui.chat.transfer import (
    MAX_IMPORT_BYTES,
    TransferError,
    choose_character,
    export_filename,
    export_markdown,
    export_text,
    import_file,
    parse_chat,
    read_chat_file,
    strip_html,
)
from webui.errors import ErrorKind

FIXTURES = ROOT / "tests" / "fixtures" / "chats"
KNOWN = ["Ember", "Seraphina"]


@pytest.fixture
def store(tmp_path):
    return HistoryStore(tmp_path / "histories")


def written(store: HistoryStore) -> list:
    return sorted(p.name for p in store.root.rglob("*")) if store.root.exists() else []


def test_textgen_webui_history_becomes_messages_in_order():
    chat = parse_chat((FIXTURES / "textgen_webui.json").read_bytes())
    assert chat.format == "text-generation-webui" and chat.mode == "chat"  # it has a greeting row
    assert [m["role"] for m in chat.messages] == ["assistant", "user", "assistant", "user", "assistant"]
    # The raw texts (internal), not the HTML-escaped ones (visible).
    assert chat.messages[1]["content"] == "Tell me about lighthouse keepers & their lamps"
    assert '"lamp"' in chat.messages[2]["content"] and "<one>" in chat.messages[2]["content"]
    assert time.localtime(chat.created)[:5] == (2026, 11, 28, 14, 5)  # metadata's first timestamp


def test_older_textgen_webui_history_data_and_data_visible():
    chat = parse_chat((FIXTURES / "textgen_webui_old.json").read_bytes())
    assert chat.mode == "instruct"
    assert chat.messages == [{"role": "user", "content": "What is a haiku?"},
                             {"role": "assistant", "content": "A short poem of three lines: five, seven and five "
                                                              "syllables."}]


def test_sillytavern_jsonl_header_messages_html_and_hidden():
    chat = parse_chat((FIXTURES / "sillytavern.jsonl").read_bytes())
    assert chat.format == "SillyTavern" and chat.character == "Seraphina"
    assert [m["role"] for m in chat.messages] == ["assistant", "user", "assistant"]
    assert chat.left_out == 1  # the message SillyTavern hides from the prompt
    greeting, user, reply = (m["content"] for m in chat.messages)
    assert greeting == "*Seraphina smiles.* Welcome to the glade, traveller.\nRest here by the spring."
    assert user == "Where am I? I <3 this place."  # not a tag: kept as typed
    # The chosen swipe's text (mes), markup off, the script dropped, the entity decoded.
    assert reply == "You are in the Eldoria forest & quite safe.\nThe trees keep watch."
    assert time.localtime(chat.created)[:6] == (2024, 9, 28, 1, 2, 36)


def test_strip_html_keeps_text_that_only_looks_like_markup():
    assert strip_html("a <grin> b < c") == "a <grin> b < c"
    assert strip_html("<STYLE>p{}</STYLE><I>x</I>") == "x"
    assert strip_html("plain") == "plain"


def test_hearth_export_imports_back_unchanged(store):
    saved, imported = import_file(store, FIXTURES / "hearth.json", KNOWN)
    assert imported.format == "Hearth"
    assert (saved.character, saved.title, saved.mode) == ("Ember", "Campfire stories", "chat")
    assert saved.messages[2]["reasoning_content"] == "A short folk tale fits the mood."
    again = parse_chat(export_text(store.load("Ember", saved.id), "json").encode())
    assert again.source is not None
    second, _ = import_file(store, _write(store.root.parent / "again.json", export_text(saved, "json")), KNOWN)
    assert second.id != saved.id and second.messages == saved.messages and second.title == saved.title
    assert second.created == saved.created == 1795860300.0


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_import_saves_one_chat_file_under_the_character(store):
    saved, _ = import_file(store, FIXTURES / "sillytavern.jsonl", KNOWN)
    assert saved.character == "Seraphina"  # the file's own character exists here
    assert written(store) == sorted(["Seraphina", f"{saved.id}.json"])
    assert store.load("Seraphina", saved.id).messages == saved.messages
    assert saved.title == "Where am I? I <3 this place."  # named after the first message


def test_character_chosen_given_then_file_then_fallback():
    st = parse_chat((FIXTURES / "sillytavern.jsonl").read_bytes())
    tgw = parse_chat((FIXTURES / "textgen_webui.json").read_bytes())
    assert choose_character(st, KNOWN, "Ember") == "Ember"
    assert choose_character(st, KNOWN, fallback="Ember") == "Seraphina"
    assert choose_character(tgw, KNOWN, fallback="Seraphina") == "Seraphina"
    assert choose_character(tgw, KNOWN) == "Ember"
    assert choose_character(tgw, []) == "Assistant"
    with pytest.raises(TransferError, match="'Seraphina', who is not a character here: choose one of Ember"):
        choose_character(st, ["Ember"])
    with pytest.raises(TransferError, match="no character 'Nobody'") as e:
        choose_character(st, KNOWN, "Nobody")
    assert e.value.kind is ErrorKind.NOT_FOUND


BAD_FILES = [
    (b"", "is empty"),
    (b"\xff\xfe\x00binary", "is not UTF-8 text"),
    (b'{"messages": [', "is not valid JSON (line 1, column 15"),
    (b"[1, 2]", "is JSON but not an object"),
    (b'{"something": "else"}', "is JSON but no chat Hearth knows"),
    (b'{"messages": [{"role": "tool", "content": "x"}]}', "message 1 has the role 'tool'; a chat holds only user"),
    (b'{"messages": [{"role": "user"}]}', "message 1 has no text"),
    (b'{"messages": "hi"}', "messages is not a list"),
    (b'{"internal": [["only one"]], "visible": []}', "row 1 of the history is not [user text, reply]"),
    (b'{"internal": {"a": 1}, "visible": []}', "internal history is not a list"),
    (b'{"user_name": "A", "character_name": "B"}\n{"mes": "hi", "is_user": true}\n{broken',
     "line 3 is not JSON"),
    (b'{"user_name": "A", "character_name": "B"}\n{"name": "B", "is_user": "yes", "mes": "x"}',
     "line 2 is not a SillyTavern message"),
    (b'{"user_name": "A"}\n[1]', "line 2 is not a JSON object"),
    (b'{"a": 1}\n{"b": 2}', "line 1 is not a SillyTavern chat header"),
    (b'{"messages": []}', "has no messages: nothing imported"),
]


@pytest.mark.parametrize(("data", "message"), BAD_FILES)
def test_bad_files_are_one_line_and_write_nothing(store, tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(TransferError) as e:
        import_file(store, path, KNOWN)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert written(store) == []


def test_size_limit_is_checked_before_reading_everything(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as f:
        f.truncate(MAX_IMPORT_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(TransferError, match="larger than 32 MiB") as e:
        read_chat_file(path)
    assert e.value.kind is ErrorKind.TOO_LARGE
    with pytest.raises(TransferError, match="no file missing.json"):
        read_chat_file(tmp_path / "missing.json")


def test_markdown_export_names_speakers_and_folds_thinking(store):
    saved, _ = import_file(store, FIXTURES / "hearth.json", KNOWN)
    text = export_markdown(saved, "Robin")
    assert text.startswith("# Campfire stories\n\n*Ember · chat · ")
    assert "**Robin:**\n\nTell me a story about the northern lights." in text
    assert "**Ember:**\n\n<details><summary>Thinking</summary>\n\nA short folk tale fits the mood." in text
    assert export_filename(saved, "markdown") == f"Campfire stories {saved.id}.md"
    with pytest.raises(TransferError, match="no export format 'pdf'"):
        export_text(saved, "pdf")


def test_exported_json_is_the_chat_file(store):
    saved, _ = import_file(store, FIXTURES / "textgen_webui.json", KNOWN, fallback="Ember")
    data = json.loads(export_text(saved, "json"))
    assert data["version"] == 1 and data["character"] == "Ember" and len(data["messages"]) == 5
