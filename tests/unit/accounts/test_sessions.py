"""UI sessions end at their expiry, at logout and when their user is removed (a clock
that the test moves: the real Sessions, not a stand-in)."""
from __future__ import annotations

from webui.accounts.sessions import Sessions


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
    users = {"alice", "bob"}
    sessions = Sessions(3600, user_exists=users.__contains__, clock=Clock())
    token = sessions.start("bob")
    users.discard("bob")
    assert sessions.user_of(token) is None
    assert sessions.user_of(None) is None and sessions.user_of("made-up") is None
