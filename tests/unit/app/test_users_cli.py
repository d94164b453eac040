"""`hearth users`: add, list, passwd, role, key, remove through the real command line."""
from __future__ import annotations

import io
import subprocess
import sys

from webui.accounts.users import UserBook
from webui.app import users_cli


class Piped(io.StringIO):
    def isatty(self) -> bool:
        return False


def run(tmp_path, *argv, stdin="") -> tuple[int, str]:
    out = io.StringIO()
    code = users_cli.main(["--user-data", str(tmp_path), *argv], stdin=Piped(stdin), out=out)
    return code, out.getvalue()


def test_add_list_passwd_role_key_remove(tmp_path, capsys):
    assert run(tmp_path, "add", "alice", stdin="alice-password\n") == (0, "added alice (admin)\n")
    assert run(tmp_path, "add", "bob", stdin="bob-password\n") == (0, "added bob (user)\n")
    assert run(tmp_path, "list")[1] == "alice\tadmin\tno API key\nbob\tuser\tno API key\n"
    book = UserBook(tmp_path / "users.json")
    assert run(tmp_path, "passwd", "bob", stdin="new-bob-password\n")[0] == 0
    assert book.verify("bob", "new-bob-password") and not book.verify("bob", "bob-password")
    code, out = run(tmp_path, "key", "bob")
    key = out.splitlines()[-1]
    assert code == 0 and book.user_for_key(key).name == "bob"
    assert run(tmp_path, "role", "bob", "admin")[0] == 0 and book.get("bob").is_admin
    assert run(tmp_path, "remove", "alice")[0] == 0 and book.names() == ["bob"]


def test_bad_input_is_one_line_on_stderr_and_exit_1(tmp_path, capsys):
    assert run(tmp_path, "add", "../x", stdin="long enough\n")[0] == 1
    assert capsys.readouterr().err == ("hearth users: '../x' is not a valid user name: 1 to 32 letters, "
                                       "digits, '_' or '-', starting with a letter or digit\n")
    assert run(tmp_path, "add", "alice", stdin="short\n")[0] == 1
    assert "too short" in capsys.readouterr().err
    assert run(tmp_path, "remove", "ghost")[0] == 1
    assert capsys.readouterr().err == "hearth users: no user named 'ghost': 'hearth users list' shows them\n"
    assert not (tmp_path / "users.json").exists()


def test_hearth_users_is_a_subcommand_of_hearth(tmp_path):
    done = subprocess.run([sys.executable, "-m", "webui", "users", "--user-data", str(tmp_path), "add", "alice"],
                          input="alice-password\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert UserBook(tmp_path / "users.json").verify("alice", "alice-password")
