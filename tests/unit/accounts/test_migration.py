"""A single-user data folder becomes the first admin's, once."""
from __future__ import annotations

import logging

from webui.accounts.migration import migrate_single_user
from webui.userdata.folders import UserData


def test_single_user_data_moves_to_the_first_admin_once(tmp_path, caplog):
    data = UserData.at(tmp_path)
    (data.histories / "Assistant").mkdir(parents=True)
    (data.histories / "Assistant" / "chat.json").write_text("{}")
    data.settings_file.write_text("mode: chat\n")
    (data.extension_data / "documents").mkdir(parents=True)
    (tmp_path / "extensions.json").write_text("{}")  # which extensions are on: the server's, stays
    (data.tools).mkdir()  # the Python tools run for everyone: they stay too
    data.mcp_file.write_text("{}")
    with caplog.at_level(logging.WARNING):
        moved = migrate_single_user(data, "alice")
    assert sorted(moved) == ["extension_data", "histories", "settings.yaml"]
    alice = data.for_user("alice")
    assert (alice.histories / "Assistant" / "chat.json").read_text() == "{}"
    assert alice.settings_file.read_text() == "mode: chat\n"
    assert not data.histories.exists() and (tmp_path / "extensions.json").exists()
    assert data.tools.is_dir() and data.mcp_file.exists()
    assert "now belongs to user 'alice'" in caplog.text
    data.settings_file.write_text("mode: instruct\n")  # written again at root later: not moved twice
    assert migrate_single_user(data, "alice") == []
    assert alice.settings_file.read_text() == "mode: chat\n"


def test_nothing_to_move_is_a_no_op(tmp_path):
    assert migrate_single_user(UserData.at(tmp_path), "alice") == []
    assert not (tmp_path / "users").exists()
