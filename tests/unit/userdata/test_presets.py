"""Presets (YAML in presets/) and the remembered chat settings, including the
command-line flags generated from them."""
from __future__ import annotations

import pytest
import yaml

from loaders.params import GenerationParams
from webui.app.flags import apply_chat_flags, build_parser
from webui.chat.settings import ChatSettings, SettingsStore
from webui.config import env_name
from webui.userdata.folders import SHIPPED_PRESETS
from webui.userdata.presets import REQUEST_SETTINGS, PresetError, PresetStore

ENV_VAR = env_name("user_data")


@pytest.fixture
def store(tmp_path):
    return PresetStore(SHIPPED_PRESETS, tmp_path / "presets")


def test_the_shipped_presets_are_valid_and_different(store):
    assert {"deterministic", "balanced", "creative", "min-p"} <= set(store.names())
    applied = {name: store.apply(name) for name in ("deterministic", "balanced", "creative", "min-p")}
    assert applied["deterministic"].temperature == 0.0
    assert applied["min-p"].min_p == 0.1 and applied["min-p"].top_p == 1.0 and applied["min-p"].top_k == 0
    assert applied["creative"].temperature > applied["balanced"].temperature
    assert len({tuple(sorted(vars(p).items())) for p in applied.values()}) == 4


def test_a_preset_resets_other_samplers_but_keeps_the_users_request_settings(store):
    mine = GenerationParams(max_new_tokens=77, stop=("END",), seed=5, xtc_probability=0.5, dry_multiplier=0.8)
    balanced = store.apply("balanced", mine)
    assert (balanced.xtc_probability, balanced.dry_multiplier) == (0.0, 0.0)  # creative's samplers are off
    assert (balanced.max_new_tokens, balanced.stop, balanced.seed) == (77, ("END",), 5)


def test_save_a_user_preset_and_it_hides_a_shipped_one(store):
    name = store.save("deterministic", GenerationParams(temperature=0.3))
    assert name == "deterministic" and (store.user_dir / "deterministic.yaml").is_file()
    assert store.apply("deterministic").temperature == 0.3
    saved = yaml.safe_load((store.user_dir / "deterministic.yaml").read_text())
    assert not set(saved) & REQUEST_SETTINGS  # a preset is samplers only
    store.delete("deterministic")
    assert store.apply("deterministic").temperature == 0.0
    with pytest.raises(PresetError, match="ships with Hearth"):
        store.delete("deterministic")


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden"])
def test_preset_names_cannot_escape_the_folder(store, name, tmp_path):
    with pytest.raises(PresetError):
        store.save(name, GenerationParams())
    assert not (tmp_path / "evil.yaml").exists()


@pytest.mark.parametrize("text,message", [
    ("temperature: hot\n", "temperature must be a number"),
    ("warmth: 1\n", "unknown setting 'warmth'"),
    ("top_p: 7\n", "top_p must be at most 1"),
    ("- a list\n", "must be a mapping"),
    ("temperature: [\n", "not valid YAML"),
])
def test_a_bad_preset_file_is_one_line(store, text, message):
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "bad.yaml").write_text(text)
    with pytest.raises(PresetError, match=message) as e:
        store.apply("bad")
    assert "\n" not in str(e.value)


def test_settings_are_remembered_and_stale_values_fall_back(tmp_path):
    settings = SettingsStore(tmp_path / "settings.yaml")
    assert settings.load() == ChatSettings()
    settings.update(mode="chat", character="Ada", preset="creative", template="Gemma")
    again = SettingsStore(tmp_path / "settings.yaml").load()
    assert (again.mode, again.character, again.preset, again.template) == ("chat", "Ada", "creative", "Gemma")
    # A hand-edited file with one bad value keeps the good ones.
    (tmp_path / "settings.yaml").write_text("mode: roleplay\ncharacter: Ada\nunknown: 1\n")
    loaded = settings.load()
    assert (loaded.mode, loaded.character) == ("instruct", "Ada")
    (tmp_path / "settings.yaml").write_text("{{{{ not yaml")
    assert settings.load() == ChatSettings()


def test_cli_flags_are_generated_from_the_settings_and_remembered(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    args = build_parser().parse_args(["--user-data", str(tmp_path), "--mode", "chat-instruct",
                                      "--character", "Ember", "--template", "ChatML"])
    apply_chat_flags(args)
    import os

    assert ENV_VAR not in os.environ  # the folder reaches the app as an argument, not through the environment
    saved = SettingsStore(tmp_path / "settings.yaml").load()
    assert (saved.mode, saved.character, saved.template) == ("chat-instruct", "Ember", "ChatML")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--mode", "roleplay"])


def test_parameters_the_backend_ignores_are_greyed_out_with_a_note():
    from webui.ui.parameters_tab import UNSUPPORTED_NOTE, supported_updates

    names = ["temperature", "top_k", "max_new_tokens", "dry_multiplier"]
    updates = dict(zip(names, supported_updates(dict.fromkeys(names), frozenset({"temperature"})), strict=True))
    assert updates["temperature"]["interactive"] and not updates["temperature"]["info"].startswith(UNSUPPORTED_NOTE)
    assert not updates["top_k"]["interactive"] and updates["top_k"]["info"].startswith(UNSUPPORTED_NOTE)
    assert not updates["dry_multiplier"]["interactive"]
    assert updates["max_new_tokens"]["interactive"]  # core applies it for every backend
    everything = supported_updates(dict.fromkeys(names), None)  # no model loaded: nothing greyed
    assert all(u["interactive"] for u in everything)
