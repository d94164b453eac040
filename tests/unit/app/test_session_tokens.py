"""Gradio's token table kept in Hearth's Sessions: Gradio's own calls (get, set, del,
`in`, keys) see a session end at its expiry, at logout and when its user is removed."""
from __future__ import annotations

from webui.accounts.sessions import Sessions
from webui.app.login import SessionTokens


def test_gradios_calls_see_expiry_logout_and_removed_users():
    now = [0.0]
    users = {"alice", "bob"}
    tokens = SessionTokens(Sessions(60, stamp_of=lambda user: "" if user in users else None, clock=lambda: now[0]))
    tokens["t-alice"] = "alice"  # what Gradio's /login does
    tokens["t-bob"] = "bob"
    assert tokens.get("t-alice") == "alice" and "t-bob" in tokens and sorted(tokens) == ["t-alice", "t-bob"]
    del tokens["t-alice"]  # Gradio's /logout
    assert tokens.get("t-alice") is None and "t-alice" not in tokens
    tokens["t-bob-2"] = "bob"
    users.discard("bob")
    # Gradio's /logout looks up every listed token: a removed user's is not listed.
    assert {t: tokens[t] for t in list(tokens.keys())} == {}
    assert tokens.get("t-bob") is None
    tokens["t-later"] = "alice"
    users.add("alice")
    now[0] += 60
    assert tokens.get("t-later") is None and len(tokens) == 0
    assert tokens.get(None) is None
