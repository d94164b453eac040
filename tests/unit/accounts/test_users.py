"""The users file: scrypt hashes with their salt and parameters, names that stay in
their folder, roles, API keys stored as hashes only."""
from __future__ import annotations

import json
import os
import threading

import pytest

from webui.accounts.access import Accounts, NotAllowed
from webui.accounts.passwords import hash_password, verify_password
from webui.accounts.users import AccountError, UnknownUser, UserBook
from webui.userdata.folders import InvalidName, UserData


def test_a_hash_is_salted_scrypt_with_its_parameters_and_checks_only_its_password():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # a salt of its own
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsf", first)
    assert not verify_password("correct horse", "scrypt$16384$8$1$broken")


def test_the_file_keeps_hashes_never_passwords_and_the_first_user_is_an_admin(tmp_path):
    book = UserBook(tmp_path / "users.json")
    assert not book  # no file: single-user
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    text = (tmp_path / "users.json").read_text()
    assert "alice-password" not in text and "bob-password" not in text
    assert oct(os.stat(tmp_path / "users.json").st_mode & 0o777) == "0o600"
    assert [(u.name, u.role) for u in book.users()] == [("alice", "admin"), ("bob", "user")]
    assert book.verify("alice", "alice-password").name == "alice"
    assert book.verify("alice", "bob-password") is None
    assert book.verify("nobody", "alice-password") is None


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "", " alice", "-rf", "x" * 33, "é"])
def test_a_user_name_that_could_leave_its_folder_is_refused_in_one_line(tmp_path, name):
    with pytest.raises(AccountError) as caught:
        UserBook(tmp_path / "users.json").add(name, "long enough")
    assert "not a valid user name" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "users.json").exists()  # nothing written
    with pytest.raises(InvalidName):
        UserData.at(tmp_path).for_user("../x")


def test_bad_passwords_roles_and_names_are_one_line_errors_and_change_nothing(tmp_path):
    book = UserBook(tmp_path / "users.json")
    with pytest.raises(AccountError, match="too short"):
        book.add("alice", "short")
    book.add("alice", "alice-password")
    before = (tmp_path / "users.json").read_text()
    with pytest.raises(AccountError, match="exists already"):
        book.add("alice", "another-password")
    with pytest.raises(UnknownUser, match="no user named 'bob'"):
        book.set_password("bob", "long enough")
    with pytest.raises(AccountError, match="unknown role"):
        book.set_role("alice", "root")
    assert (tmp_path / "users.json").read_text() == before


def test_the_only_admin_cannot_be_demoted_or_removed_while_others_remain(tmp_path):
    book = UserBook(tmp_path / "users.json")
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    with pytest.raises(AccountError, match="only admin"):
        book.remove("alice")
    with pytest.raises(AccountError, match="only admin"):
        book.set_role("alice", "user")
    book.set_role("bob", "admin")
    book.remove("alice")
    assert book.names() == ["bob"]


def test_an_api_key_is_stored_as_a_hash_and_a_new_one_replaces_the_old(tmp_path):
    book = UserBook(tmp_path / "users.json")
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    key = book.new_key("bob")
    assert key.startswith("hearth-") and len(key) > 40
    assert key not in (tmp_path / "users.json").read_text()
    assert book.user_for_key(key).name == "bob"
    newer = book.new_key("bob")
    assert book.user_for_key(key) is None and book.user_for_key(newer).name == "bob"
    assert book.user_for_key("") is None and book.user_for_key("hearth-guess") is None


def test_a_change_by_another_process_is_seen_and_a_damaged_file_never_opens_the_server(tmp_path):
    path = tmp_path / "users.json"
    running = UserBook(path)
    UserBook(path).add("alice", "alice-password")  # as `hearth users add` would, elsewhere
    assert running.names() == ["alice"]
    path.write_text("{not json")
    with pytest.raises(AccountError, match="cannot read the users file"):
        running.names()


def test_roles_decide_who_may_run_the_models(tmp_path):
    book = UserBook(tmp_path / "users.json")
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    accounts = Accounts(book, api_key="shortcut-key")
    assert accounts.separate and accounts.login_required and accounts.keys_required
    assert accounts.is_admin("alice") and not accounts.is_admin("bob") and not accounts.is_admin("ghost")
    accounts.require_admin("alice", "load models")
    with pytest.raises(NotAllowed) as caught:
        accounts.require_admin("bob", "load models")
    assert str(caught.value) == "only an admin can load models; you are logged in as 'bob'"
    assert accounts.user_for_key("shortcut-key") == "alice"  # --api-key acts as the first admin
    assert accounts.user_for_key("wrong") is None


def test_without_a_users_file_the_one_user_is_the_admin_and_auth_is_a_one_user_shortcut(tmp_path):
    single = Accounts(UserBook(tmp_path / "users.json"))
    assert not single.separate and not single.login_required and single.is_admin("local")
    shortcut = Accounts(UserBook(tmp_path / "users.json"), shortcut=("me", "secret"))
    assert shortcut.login_required and shortcut.check_password("me", "secret")
    assert not shortcut.check_password("me", "wrong") and not shortcut.check_password("you", "secret")
    assert shortcut.first_admin() == "me" and shortcut.is_admin("me")


def test_the_file_is_json_with_a_version(tmp_path):
    UserBook(tmp_path / "users.json").add("alice", "alice-password")
    data = json.loads((tmp_path / "users.json").read_text())
    assert data["version"] == 1 and data["users"]["alice"]["role"] == "admin"


def test_local_is_reserved_even_in_a_hand_edited_file(tmp_path):
    """Requests without a login or key run as "local": a user of that name would get them."""
    book = UserBook(tmp_path / "users.json")
    with pytest.raises(AccountError, match="'local' is reserved"):
        book.add("local", "local-password")
    book.add("alice", "alice-password")
    for name in ("local", "../x"):
        data = json.loads((tmp_path / "users.json").read_text())
        data["users"][name] = dict(data["users"]["alice"])
        (tmp_path / "users.json").write_text(json.dumps(data))
        with pytest.raises(AccountError, match="cannot read the users file") as caught:
            UserBook(tmp_path / "users.json").names()
        assert "\n" not in str(caught.value)
        del data["users"][name]
        (tmp_path / "users.json").write_text(json.dumps(data))


def test_two_changes_at_once_lose_neither(tmp_path):
    """Two `hearth users` commands at once (here two books on one file, in two threads):
    each reads the file under a lock, so neither's user is written over by the other's."""
    path = tmp_path / "users.json"
    UserBook(path).add("admin0", "admin-password")

    def add_many(prefix: str) -> None:
        book = UserBook(path)
        for i in range(4):
            book.add(f"{prefix}{i}", "long enough")

    threads = [threading.Thread(target=add_many, args=(p,)) for p in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(UserBook(path).names()) == ["a0", "a1", "a2", "a3", "admin0", "b0", "b1", "b2", "b3"]
