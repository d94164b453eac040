"""UI sessions end at their expiry, at logout and when their user is removed (a clock
that the test moves: the real Sessions, not a stand-in)."""
from __future__ import annotations

from webui.accounts.access import Accounts
from webui.accounts.sessions import Sessions
from webui.accounts.users import UserBook


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_expires_after_its_lifetime():
    clock = Clock()
    sessions = Sessions(3600, clock=clock)
    token = sessions.start("alice")
    assert len(token) >= 20 and sessions.user_of(token) == "alice"
    clock.now += 3599
    assert sessions.user_of(token) == "alice"
    clock.now += 1
    assert sessions.user_of(token) is None
    assert token not in sessions.tokens()  # forgotten, not only refused


def test_logout_ends_one_session_and_end_user_ends_all_of_a_users():
    sessions = Sessions(3600, clock=Clock())
    a1, a2, b = sessions.start("alice"), sessions.start("alice"), sessions.start("bob")
    sessions.end(a1)
    assert sessions.user_of(a1) is None and sessions.user_of(a2) == "alice"
    sessions.end_user("alice")
    assert sessions.user_of(a2) is None and sessions.user_of(b) == "bob"


def test_a_removed_users_live_session_ends_at_its_next_request():
    users = {"alice": "stamp", "bob": "stamp"}
    sessions = Sessions(3600, stamp_of=users.get, clock=Clock())
    token, other = sessions.start("bob"), sessions.start("bob")
    del users["bob"]
    assert sessions.tokens() == []  # never listed again, so never looked up half-ended
    assert sessions.user_of(token) is None
    assert sessions.user_of(None) is None and sessions.user_of("made-up") is None
    users["bob"] = "stamp of a new bob"  # removed and added again: the old cookies stay dead
    assert sessions.user_of(other) is None


def test_a_new_password_ends_the_users_sessions_through_the_users_file(tmp_path):
    book = UserBook(tmp_path / "users.json")
    book.add("alice", "alice-password")
    book.add("bob", "bob-password")
    accounts = Accounts(book)
    sessions = Sessions(3600, stamp_of=accounts.session_stamp, clock=Clock())
    alice, bob = sessions.start("alice"), sessions.start("bob")
    book.set_role("bob", "admin")  # a new role is read at each request: the session goes on
    assert sessions.user_of(bob) == "bob"
    book.set_password("bob", "a-new-password")  # as `hearth users passwd bob` would
    assert sessions.user_of(bob) is None and sessions.user_of(alice) == "alice"
    book.remove("bob")
    book.add("bob", "bob-password")
    assert sessions.user_of(bob) is None
