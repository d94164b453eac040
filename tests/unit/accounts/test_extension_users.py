"""An extension's context knows whose request runs, and its data folder is that user's
unless the extension declares SHARED_DATA."""
from __future__ import annotations

import textwrap

from webui.accounts.current import LOCAL_USER, acting_as, current_user
from webui.extensions import ExtensionManager
from webui.extensions.store import ExtensionStore
from webui.tools.registry import ToolRegistry

BODY = "EXTENSION_API = 1\n"


def manager(tmp_path, extensions: dict[str, str]) -> ExtensionManager:
    for name, body in extensions.items():
        (tmp_path / "ext" / name).mkdir(parents=True)
        (tmp_path / "ext" / name / "script.py").write_text(textwrap.dedent(body))
    found = ExtensionManager(None, roots=[tmp_path / "ext"], store=ExtensionStore(None), data_root=tmp_path / "shared",
                             user_data_root=lambda user: tmp_path / "users" / user / "extension_data")
    found.discover()
    return found


def test_ctx_user_and_data_dir_follow_the_current_user(tmp_path):
    extensions = manager(tmp_path, {"notes": BODY, "common": BODY + "SHARED_DATA = True\n"})
    notes, common = extensions.context("notes"), extensions.context("common")
    assert current_user() == LOCAL_USER and notes.user == LOCAL_USER
    with acting_as("alice"):
        assert notes.user == "alice"
        assert notes.data_dir == tmp_path / "users" / "alice" / "extension_data" / "notes"
        assert common.data_dir == tmp_path / "shared" / "common"
    with acting_as("bob"):
        assert notes.save_file("x.txt", "bob's") == tmp_path / "users" / "bob" / "extension_data" / "notes" / "x.txt"
    assert not (tmp_path / "users" / "alice" / "extension_data" / "notes" / "x.txt").exists()


def test_an_extensions_tool_runs_as_the_user_whose_chat_called_it(tmp_path):
    """The chat's tool call runs in a thread of its own with a time limit: it still knows
    whose chat it is (the documents extension's search_documents searches that user's library)."""
    extensions = manager(tmp_path, {"whoami": BODY + textwrap.dedent('''
        _ctx = {}

        def setup(ctx):
            _ctx["ctx"] = ctx

        def whoami() -> str:
            """Who is asking."""
            return _ctx["ctx"].user + " " + str(_ctx["ctx"].data_dir)

        def tools(ctx):
            return [whoami]
        ''')})
    extensions.enable("whoami", persist=False)
    registry = ToolRegistry([], None, extensions.tools)
    with acting_as("alice"):
        answer = registry.get("whoami").invoke({}, 10)
    assert answer == f"alice {tmp_path / 'users' / 'alice' / 'extension_data' / 'whoami'}"


def test_an_extensions_settings_are_each_users_unless_it_shares_its_data(tmp_path):
    """bob moving the documents extension's slider must not change alice's retrieval; a
    setting made before accounts (the shared file) stays everyone's default."""
    shared = ExtensionStore(tmp_path / "extensions.json")
    shared.set("notes", "top_k", 3)
    (tmp_path / "ext" / "notes").mkdir(parents=True)
    (tmp_path / "ext" / "notes" / "script.py").write_text(BODY)
    (tmp_path / "ext" / "common").mkdir(parents=True)
    (tmp_path / "ext" / "common" / "script.py").write_text(BODY + "SHARED_DATA = True\n")
    extensions = ExtensionManager(None, roots=[tmp_path / "ext"], store=shared,
                                  user_data_root=lambda user: tmp_path / "users" / user / "extension_data",
                                  user_settings_file=lambda user: tmp_path / "users" / user / "extensions.json")
    extensions.discover()
    notes, common = extensions.context("notes"), extensions.context("common")
    with acting_as("bob"):
        notes.set_setting("top_k", 8)
        common.set_setting("mode", "bob's")
        assert notes.get_setting("top_k") == 8
    with acting_as("alice"):
        assert notes.get_setting("top_k") == 3  # the shared default, not bob's
        assert common.get_setting("mode") == "bob's"  # SHARED_DATA: one for all
    assert shared.get("notes", "top_k") == 3
    assert ExtensionStore(tmp_path / "users" / "bob" / "extensions.json").get("notes", "top_k") == 8


def test_the_single_users_settings_file_is_the_shared_one(tmp_path):
    """Without accounts every user is the one user, whose file is the store's own: one writer."""
    shared = ExtensionStore(tmp_path / "extensions.json")
    shared.set_enabled("notes", True)
    manager(tmp_path, {"notes": BODY})  # writes the extension's folder
    extensions = ExtensionManager(None, roots=[tmp_path / "ext"], store=shared,
                                  user_data_root=lambda user: tmp_path / "extension_data",
                                  user_settings_file=lambda user: tmp_path / "extensions.json")
    extensions.discover()
    extensions.context("notes").set_setting("top_k", 5)
    assert ExtensionStore(tmp_path / "extensions.json").enabled() == ["notes"]
    assert shared.get("notes", "top_k") == 5
