"""`hearth chats import|export|list|search` through the real command line: a
SillyTavern file in, the chat back out as JSON and Markdown, a bad file one line with
nothing written, and with accounts each user's own folder."""
from __future__ import annotations

import io
import json
import subprocess
import sys

from tests.support import ROOT
from webui.accounts.users import UserBook
from webui.app import chats_cli

FIXTURES = ROOT / "tests" / "fixtures" / "chats"


def run(user_data, *argv) -> tuple[int, str]:
    out = io.StringIO()
    code = chats_cli.main([*argv[:1], "--user-data", str(user_data), *argv[1:]], out=out)
    return code, out.getvalue()


def test_import_list_search_export_through_hearth(tmp_path):
    # The real entry point once (`hearth chats ...` is `python -m webui chats ...`).
    done = subprocess.run([sys.executable, "-m", "webui", "chats", "import", str(FIXTURES / "sillytavern.jsonl"),
                           "--character", "Ember", "--user-data", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(SillyTavern, 3 messages; 1 hidden messages left out): “Where am I? I <3 this place.”, a chat " \
           "with Ember" in done.stdout
    chat_id = done.stdout.split()[1]
    assert (tmp_path / "histories" / "Ember" / f"{chat_id}.json").is_file()

    code, listed = run(tmp_path, "list")
    assert code == 0 and listed.startswith(f"{chat_id}\tEmber\t") and "3 messages" in listed
    code, found = run(tmp_path, "search", "eldoria", "SAFE")
    assert code == 0 and found.startswith(f"{chat_id}\tEmber\t") and "Eldoria forest & quite safe" in found

    code, text = run(tmp_path, "export", chat_id)
    assert code == 0 and json.loads(text)["messages"][0]["content"].startswith("*Seraphina smiles.*")
    out = tmp_path / "out" / "chat.md"
    assert run(tmp_path, "export", chat_id, "--format", "markdown", "-o", str(out), "--user-name", "Robin")[0] == 0
    assert "**Robin:**\n\nWhere am I?" in out.read_text()
    # The JSON export imports back as a chat of its own with the same messages.
    exported = tmp_path / "chat.json"
    exported.write_text(text)
    code, said = run(tmp_path, "import", str(exported))
    assert code == 0 and "(Hearth, 3 messages)" in said


def test_bad_file_and_unknown_character_are_one_line_and_write_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_name": "A", "character_name": "B"}\n{"mes": 1}\n')
    assert run(tmp_path, "import", str(bad))[0] == 1
    assert capsys.readouterr().err == "hearth chats: bad.jsonl: line 2 is not a SillyTavern message (mes, is_user)\n"
    assert run(tmp_path, "import", str(FIXTURES / "sillytavern.jsonl"))[0] == 1
    err = capsys.readouterr().err
    assert err.startswith("hearth chats: the chat is with 'Seraphina', who is not a character here: choose one of ")
    assert run(tmp_path, "import", str(FIXTURES / "hearth.json"), "--character", "Nobody")[0] == 1
    assert "no character 'Nobody'" in capsys.readouterr().err
    assert run(tmp_path, "export", "20260101-000000-abcdef")[0] == 1
    assert "no chat 20260101-000000-abcdef" in capsys.readouterr().err
    assert not (tmp_path / "histories").exists()


def test_with_accounts_each_user_has_their_own_chats(tmp_path, capsys):
    book = UserBook(tmp_path / "users.json")
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    assert run(tmp_path, "import", str(FIXTURES / "hearth.json"))[0] == 1
    assert capsys.readouterr().err == "hearth chats: Hearth has accounts: say whose chats with --user NAME " \
                                      "(alice, bob)\n"
    assert run(tmp_path, "import", str(FIXTURES / "hearth.json"), "--user", "bob")[0] == 0
    assert len(list((tmp_path / "users" / "bob" / "histories" / "Ember").glob("*.json"))) == 1
    assert run(tmp_path, "list", "--user", "alice") == (0, "")
    assert run(tmp_path, "search", "northern", "--user", "bob")[1].count("\n") == 1
    assert run(tmp_path, "list", "--user", "carol")[0] == 1
    assert "no user 'carol'" in capsys.readouterr().err
