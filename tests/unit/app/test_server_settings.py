"""Server settings are declared once (ServerSettings, with setting()): their flags,
bounds and HEARTH_* variables are generated from the declarations, and --user-data
reaches Hearth as an argument, never through os.environ."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from loaders.fields import SettingError, describe
from tests.support import ROOT
from webui.app import server
from webui.app.download_cli import DownloadSettings
from webui.app.download_cli import build_parser as build_download_parser
from webui.app.flags import apply_chat_flags, build_parser, check_network_safety, settings_from_args
from webui.chat.settings import SettingsStore
from webui.config import ENV_NAMES, ENVIRONMENT, ServerSettings

ENV_PATTERN = re.compile(r"(?<![A-Za-z0-9_])HEARTH_[A-Z0-9_]*[A-Z0-9]")


def flags_by_dest(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {a.dest: a.option_strings for a in parser._actions if a.dest not in ("help", "version")}


def test_every_server_setting_has_a_flag_and_every_server_flag_a_setting():
    dests = flags_by_dest(build_parser())
    server_flags = {d for d in dests if not d.startswith(("chat_", "opt_"))}
    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    assert server_flags == fields
    for spec in describe(ServerSettings):
        assert spec.help, spec.name
        assert spec.flag in dests[spec.name]


def test_existing_flag_names_and_defaults_are_kept():
    dests = flags_by_dest(build_parser())
    assert "--extensions-dir" in dests["extension_dirs"]
    assert "--no-model" in dests["no_model"] and "--listen" in dests["listen"]
    settings = settings_from_args(build_parser().parse_args([]), environ={})
    assert settings == ServerSettings()
    assert (settings.host, settings.port, settings.models_dir, settings.user_data) == (
        "127.0.0.1", 7860, "models", "user_data")
    assert (settings.max_request_mb, settings.max_prompt_chars, settings.max_queue,
            settings.extension_timeout) == (8.0, 1_000_000, 64, 10.0)
    given = settings_from_args(build_parser().parse_args(
        ["--cors-origins", "https://a.example, https://b.example", "--extensions", "one", "two",
         "--extensions-dir", "d1", "--extensions-dir", "d2", "--no-model", "--port", "8000"]), environ={})
    assert given.cors_origins == ("https://a.example", "https://b.example")
    assert given.extensions == ("one", "two") and given.extension_dirs == ("d1", "d2")
    assert given.no_model and given.port == 8000


@pytest.mark.parametrize("argv, words", [
    (["--port", "0"], "--port must be at least 1"),
    (["--port", "65536"], "--port must be at most 65535"),
    (["--max-queue", "0"], "--max-queue must be at least 1"),
    (["--max-prompt-chars", "0"], "--max-prompt-chars must be at least 1"),
    (["--max-request-mb", "0"], "--max-request-mb must be greater than 0"),
    (["--extension-timeout", "0"], "--extension-timeout must be greater than 0"),
])
def test_bounds_come_from_the_declarations_and_name_the_flag(argv, words):
    with pytest.raises(SettingError, match=re.escape(words)):
        settings_from_args(build_parser().parse_args(argv), environ={})
    made_in_code = dataclasses.replace(ServerSettings(), **{argv[0][2:].replace("-", "_"): 0})
    assert check_network_safety(made_in_code).startswith(argv[0])


def test_a_bound_is_a_one_line_error_with_exit_code_2():
    done = subprocess.run([sys.executable, "-m", "webui", "--port", "70000"], capture_output=True, text=True,
                          cwd=ROOT, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert done.stderr.strip() == "hearth: --port must be at most 65535 (got 70000)"


def test_every_hearth_variable_is_in_the_one_table():
    used = set()
    for folder in ("webui", "loaders"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(ENV_PATTERN.findall(path.read_text(encoding="utf-8")))
    assert used, "the scan found no HEARTH_ variable at all"
    assert used <= ENV_NAMES, f"not in webui.config's table: {sorted(used - ENV_NAMES)}"
    assert {"HEARTH_AUTH", "HEARTH_API_KEY", "HEARTH_USER_DATA", "HEARTH_REMOTE_API_KEY"} <= ENV_NAMES
    assert len(ENV_NAMES) == len(ENVIRONMENT)  # one row each


def test_only_the_config_module_of_webui_spells_a_variable_name():
    """Everything else asks webui.config (env_name, environment_settings)."""
    spelled = []
    for path in (ROOT / "webui").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_PATTERN.fullmatch(node.value):
                spelled.append(path.relative_to(ROOT).as_posix())
    assert set(spelled) == {"webui/config.py"}


def test_help_lists_every_variable_and_flag():
    text = build_parser().format_help()
    for variable in ENVIRONMENT:
        assert variable.name in text and variable.flag in text


def test_the_environment_stands_in_for_a_flag_not_given():
    environ = {"HEARTH_AUTH": "me:pw", "HEARTH_API_KEY": "k", "HEARTH_USER_DATA": "/data/hearth"}
    from_env = settings_from_args(build_parser().parse_args(["--listen"]), environ=environ)
    assert (from_env.auth, from_env.api_key, from_env.user_data) == ("me:pw", "k", "/data/hearth")
    flag_wins = settings_from_args(build_parser().parse_args(["--user-data", "/mine", "--api-key", "mine"]),
                                   environ=environ)
    assert (flag_wins.user_data, flag_wins.api_key) == ("/mine", "mine")
    assert settings_from_args(build_parser().parse_args([]), environ={"HEARTH_API_KEY": ""}).api_key is None


def test_user_data_reaches_hearth_as_an_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HEARTH_USER_DATA", str(tmp_path / "from-the-environment"))
    before = dict(os.environ)
    args = build_parser().parse_args(["--user-data", str(tmp_path / "mine"), "--mode", "chat",
                                      "--models-dir", str(tmp_path / "models")])
    settings = settings_from_args(args)
    apply_chat_flags(args, settings.user_data)
    hearth = server.create_hearth(settings)
    try:
        assert dict(os.environ) == before
        assert hearth.user_data.root == tmp_path / "mine"
        assert SettingsStore(tmp_path / "mine" / "settings.yaml").load().mode == "chat"
        assert not (tmp_path / "from-the-environment").exists()
    finally:
        hearth.engine.close()


def test_download_flags_come_from_download_settings():
    parser = build_download_parser()
    dests = flags_by_dest(parser)
    assert set(dests) == {f.name for f in dataclasses.fields(DownloadSettings)}
    for spec in describe(DownloadSettings):
        assert spec.help and (spec.positional or spec.flag in dests[spec.name])
    assert "--list" in dests["list_only"] and "--models-dir" in dests["models_dir"]
    args = parser.parse_args(["ORG/REPO", "--include", "*Q4*", "--include", "*.json", "--list"])
    assert (args.repo, args.include, args.list_only) == ("ORG/REPO", ["*Q4*", "*.json"], True)


def test_a_download_bound_is_a_one_line_error():
    done = subprocess.run([sys.executable, "-m", "webui", "download", "ORG/REPO", "--n-ctx", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert done.stderr.strip() == "hearth download: --n-ctx must be at least 1 (got 0)"
