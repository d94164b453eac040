"""The extension registry without a model: discovery, the API version and hook
shapes, switching on and off, persistence, and fault isolation (an import error, a
raising hook, a hook that hangs, a wrong return type)."""
from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest

from webui.extensions import EXTENSION_API_VERSION, HOOKS, SHIPPED_EXTENSIONS, ExtensionError, ExtensionManager, Prompt
from webui.extensions.store import ExtensionStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "extensions"


def write_extension(root: Path, name: str, body: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "script.py").write_text(textwrap.dedent(body))
    return folder


def manager_for(*roots: Path, store: ExtensionStore | None = None, timeout: float = 0.5,
                tmp: Path | None = None) -> ExtensionManager:
    return ExtensionManager(None, roots=list(roots), store=store or ExtensionStore(None),
                            data_root=(tmp or Path("/nonexistent")) / "data", timeout=timeout,
                            setup_timeout=max(timeout, 30.0))


# --- discovery and the API contract ------------------------------------------------------
def test_shipped_extensions_load_and_declare_their_hooks():
    manager = manager_for(SHIPPED_EXTENSIONS)
    found = {e.name: e for e in manager.discover()}
    assert {"documents", "stats", "example"} <= set(found)
    for ext in found.values():
        assert ext.loadable, ext.error
        assert ext.description and ext.title
    # The example shows every hook there is.
    assert set(found["example"].hooks) == set(HOOKS)
    assert {"modify_prompt", "modify_output", "ui_tab", "setup"} <= set(found["documents"].hooks)
    assert {"ui_tab", "api_router"} <= set(found["stats"].hooks)


def test_broken_extensions_are_listed_with_a_one_line_reason(tmp_path):
    manager = manager_for(FIXTURES, SHIPPED_EXTENSIONS, tmp=tmp_path)
    found = {e.name: e for e in manager.discover()}
    assert "ImportError: this extension is broken on purpose" in found["broken_import"].error
    assert f"this Hearth provides version {EXTENSION_API_VERSION}" in found["old_api"].error
    assert "modify_output must take (text, prompt, ctx)" in found["bad_signature"].error
    for name in ("broken_import", "old_api", "bad_signature"):
        assert not found[name].loadable
        assert "\n" not in found[name].error
        with pytest.raises(ExtensionError, match=f"extension {name} cannot be switched on"):
            manager.enable(name)
    # Everything else is unaffected.
    assert found["example"].loadable
    manager.enable("example", persist=False)
    assert manager.modify_input("  a   b ") == "a b"


def test_missing_api_version_is_refused(tmp_path):
    write_extension(tmp_path, "noversion", "def modify_input(text, ctx):\n    return text\n")
    ext = manager_for(tmp_path).discover()[0]
    assert not ext.loadable
    assert "EXTENSION_API = 1" in ext.error


def test_unknown_extension_names_the_ones_found(tmp_path):
    write_extension(tmp_path, "one", "EXTENSION_API = 1\n")
    manager = manager_for(tmp_path)
    manager.discover()
    with pytest.raises(ExtensionError, match=r"no extension named 'two' \(found: one\)"):
        manager.enable("two")


def test_an_extension_imports_its_own_modules(tmp_path):
    folder = write_extension(tmp_path, "multi", """
        from .helper import shout
        EXTENSION_API = 1
        def modify_input(text, ctx):
            return shout(text)
    """)
    (folder / "helper.py").write_text("def shout(t):\n    return t.upper()\n")
    manager = manager_for(tmp_path)
    manager.discover()
    manager.enable("multi", persist=False)
    assert manager.modify_input("hi") == "HI"


# --- hooks and fault isolation --------------------------------------------------------
def test_hooks_chain_in_the_order_extensions_were_switched_on(tmp_path):
    write_extension(tmp_path, "a", "EXTENSION_API = 1\ndef modify_input(text, ctx):\n    return text + 'a'\n")
    write_extension(tmp_path, "b", "EXTENSION_API = 1\ndef modify_input(text, ctx):\n    return text + 'b'\n")
    manager = manager_for(tmp_path)
    manager.start(["b", "a"])
    assert manager.modify_input("") == "ba"
    manager.disable("b", persist=False)
    assert manager.modify_input("") == "a"


def test_a_raising_hook_is_switched_off_and_the_text_goes_through(tmp_path):
    write_extension(tmp_path, "good", "EXTENSION_API = 1\ndef modify_input(text, ctx):\n    return text + '!'\n")
    manager = manager_for(FIXTURES, tmp_path)
    faults = []
    manager.add_fault_listener(lambda name, message: faults.append((name, message)))
    manager.start(["raising", "good"])
    assert manager.modify_input("hello") == "hello!"
    raising = manager.get("raising")
    assert not raising.enabled
    assert raising.error == "modify_input raised RuntimeError: modify_input is broken on purpose"
    assert faults == [("raising", raising.error)]
    assert [e.name for e in manager.enabled()] == ["good"]
    # Switched on again by the user, it gets another chance (and fails again).
    manager.enable("raising", persist=False)
    assert manager.modify_output("x", Prompt("chat")) == "x"
    assert not manager.is_enabled("raising")


def test_a_half_done_prompt_edit_does_not_survive_a_failure():
    manager = manager_for(FIXTURES)
    manager.start(["raising"])
    prompt = manager.chat_prompt([{"role": "user", "content": "hi"}], "be brief")
    assert prompt.system_prompt == "be brief"
    assert prompt.messages == [{"role": "user", "content": "hi"}]
    assert "modify_prompt raised" in manager.get("raising").error


def test_a_hanging_hook_is_abandoned_after_the_time_limit():
    manager = manager_for(FIXTURES, timeout=0.3)
    manager.start(["hanging"])
    start = time.perf_counter()
    assert manager.modify_input("hello") == "hello"
    assert time.perf_counter() - start < 2.0
    ext = manager.get("hanging")
    assert not ext.enabled
    assert ext.error == "modify_input did not finish within 0.3s"
    # Off now: the next call does not wait at all.
    start = time.perf_counter()
    assert manager.modify_output("reply", None) == "reply"
    assert time.perf_counter() - start < 0.1


def test_a_wrong_return_type_is_a_fault(tmp_path):
    write_extension(tmp_path, "wrong", "EXTENSION_API = 1\ndef modify_input(text, ctx):\n    return 42\n")
    manager = manager_for(tmp_path)
    manager.start(["wrong"])
    assert manager.modify_input("hi") == "hi"
    assert manager.get("wrong").error == "modify_input returned int; it must return str"


def test_sys_exit_in_a_hook_does_not_end_the_caller(tmp_path):
    write_extension(tmp_path, "exits", "import sys\nEXTENSION_API = 1\n"
                    "def modify_input(text, ctx):\n    sys.exit(3)\n")
    manager = manager_for(tmp_path)
    manager.start(["exits"])
    assert manager.modify_input("hi") == "hi"
    assert "SystemExit" in manager.get("exits").error


def test_a_failing_setup_leaves_the_extension_off(tmp_path):
    write_extension(tmp_path, "nosetup", "EXTENSION_API = 1\ndef setup(ctx):\n    raise OSError('no disk')\n"
                    "def modify_input(text, ctx):\n    return 'changed'\n")
    manager = manager_for(tmp_path)
    problems = manager.start(["nosetup"])
    assert problems == ["extension nosetup could not be switched on: setup raised OSError: no disk"]
    assert not manager.is_enabled("nosetup")
    assert manager.modify_input("hi") == "hi"


def test_setup_runs_once_per_switch_on_and_teardown_on_switch_off(tmp_path):
    write_extension(tmp_path, "life", """
        EXTENSION_API = 1
        calls = []
        def setup(ctx):
            calls.append("setup")
        def teardown(ctx):
            calls.append("teardown")
    """)
    manager = manager_for(tmp_path)
    manager.discover()
    module = manager.get("life").module
    manager.enable("life", persist=False)
    manager.enable("life", persist=False)  # already on: nothing happens
    manager.disable("life", persist=False)
    manager.enable("life", persist=False)
    assert module.calls == ["setup", "teardown", "setup"]


def test_hooks_from_many_threads_at_once(tmp_path):
    write_extension(tmp_path, "count", """
        import threading
        EXTENSION_API = 1
        lock = threading.Lock()
        n = 0
        def modify_input(text, ctx):
            global n
            with lock:
                n += 1
            return text
    """)
    manager = manager_for(tmp_path, timeout=5)
    manager.start(["count"])
    threads = [threading.Thread(target=lambda: [manager.modify_input("x") for _ in range(20)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert manager.get("count").module.n == 160
    assert manager.is_enabled("count")


# --- persistence -----------------------------------------------------------------------
def test_switches_persist_but_command_line_choices_do_not(tmp_path):
    write_extension(tmp_path / "ext", "one", "EXTENSION_API = 1\n")
    write_extension(tmp_path / "ext", "two", "EXTENSION_API = 1\n")
    path = tmp_path / "user" / "extensions.json"
    manager = manager_for(tmp_path / "ext", store=ExtensionStore(path))
    manager.start(["two"])  # --extensions two: this run only
    manager.enable("one")  # the UI switch: remembered
    assert json.loads(path.read_text())["enabled"] == ["one"]
    again = manager_for(tmp_path / "ext", store=ExtensionStore(path))
    again.start()
    assert [e.name for e in again.enabled()] == ["one"]
    again.disable("one")
    assert json.loads(path.read_text())["enabled"] == []


def test_a_fault_does_not_change_the_users_choice(tmp_path):
    path = tmp_path / "extensions.json"
    manager = manager_for(FIXTURES, store=ExtensionStore(path))
    manager.discover()
    manager.enable("raising")
    manager.modify_input("x")
    assert not manager.is_enabled("raising")
    assert json.loads(path.read_text())["enabled"] == ["raising"]


def test_a_damaged_settings_file_is_ignored(tmp_path, caplog):
    path = tmp_path / "extensions.json"
    path.write_text("{not json")
    store = ExtensionStore(path)
    assert store.enabled() == []
    store.set_enabled("example", True)
    assert json.loads(path.read_text())["enabled"] == ["example"]


def test_extension_settings_and_files(tmp_path):
    write_extension(tmp_path / "ext", "keeper", "EXTENSION_API = 1\n")
    path = tmp_path / "extensions.json"
    manager = manager_for(tmp_path / "ext", store=ExtensionStore(path), tmp=tmp_path)
    manager.discover()
    ctx = manager.context("keeper")
    assert ctx.get_setting("top_k", 3) == 3
    ctx.set_setting("top_k", 5)
    assert ExtensionStore(path).get("keeper", "top_k") == 5
    with pytest.raises(TypeError):
        ctx.set_setting("bad", object())
    saved = ctx.save_file("notes.json", '{"a": 1}')
    assert saved == tmp_path / "data" / "keeper" / "notes.json"
    assert saved.read_text() == '{"a": 1}'
    for bad in ("../escape", "/etc/passwd", ".hidden", ""):
        with pytest.raises(ValueError):
            ctx.save_file(bad, b"x")
    assert ctx.model() is None
    assert ctx.recent_replies() == []


def test_the_documented_minimal_example_works(tmp_path):
    """docs/EXTENSIONS.md's copy-me example, as written there."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "EXTENSIONS.md").read_text()
    code = doc.split("`extensions/shout/script.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    write_extension(tmp_path, "shout", code)
    manager = manager_for(tmp_path)
    manager.start(["shout"])
    ext = manager.get("shout")
    assert ext.title == "Shout" and ext.description == "Upper-cases every reply."
    assert manager.modify_output("hello", Prompt("chat")) == "HELLO"
    assert f"EXTENSION_API = {EXTENSION_API_VERSION}" in code
