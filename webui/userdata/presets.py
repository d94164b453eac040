"""Parameter presets: YAML files of sampler settings. Hearth's own are in the
repository's `presets/`; a user's are saved to the user data folder (and hide a
shipped preset of the same name).

A preset sets every sampler: fields it does not name go back to their defaults, so
switching presets never leaves a sampler from the previous one switched on. The
per-request settings (reply length, stop strings, grammar, seed) are the user's,
not the preset's: they are kept unless a preset names them.
"""
from __future__ import annotations

from typing import Any

from loaders.errors import ErrorKind, UserError
from loaders.fields import SettingError, build, describe, to_dict
from loaders.params import GenerationParams
from webui.userdata.atomic import write_text_atomic
from webui.userdata.folders import InvalidName, ShippedAndUserFiles, check_name

MAX_PRESET_FILE_BYTES = 1 << 20
REQUEST_SETTINGS = frozenset({"max_new_tokens", "stop", "grammar", "seed", "ignore_eos"})
SAMPLER_SETTINGS = tuple(s.name for s in describe(GenerationParams) if s.name not in REQUEST_SETTINGS)


class PresetError(UserError, ValueError):
    """A preset cannot be read, saved or found (one line)."""

    kind = ErrorKind.INVALID


class PresetStore(ShippedAndUserFiles):
    """Sampler presets: shipped YAML files in presets/, and the user's own."""

    def values(self, name: str) -> dict[str, Any]:
        """The preset's own settings, validated."""
        import yaml

        entry = self._files().get(name)
        if entry is None:
            raise PresetError(f"no preset named {name!r}")
        path = entry[0]
        if path.stat().st_size > MAX_PRESET_FILE_BYTES:
            raise PresetError(f"{path.name} is too large to be a preset")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise PresetError(f"{path.name} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise PresetError(f"{path.name} must be a mapping of setting: value")
        try:
            checked = build(GenerationParams, data)
        except (SettingError, TypeError) as e:
            raise PresetError(f"preset {name}: {e}") from None
        return {k: getattr(checked, k) for k in data}

    def apply(self, name: str, current: GenerationParams | None = None) -> GenerationParams:
        """`current` with the preset applied (samplers reset to defaults first)."""
        current = current or GenerationParams()
        kept = {k: getattr(current, k) for k in REQUEST_SETTINGS}
        try:
            return build(GenerationParams, {**kept, **self.values(name)})
        except SettingError as e:
            raise PresetError(f"preset {name}: {e}") from None

    def save(self, name: str, params: GenerationParams) -> str:
        import yaml

        try:
            name = check_name(name, "preset name")
        except InvalidName as e:
            raise PresetError(str(e)) from None
        values = to_dict(params)
        data = {k: values[k] for k in SAMPLER_SETTINGS}
        with self._lock:
            write_text_atomic(self.user_dir / f"{name}.yaml",
                              yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        return name

    def delete(self, name: str) -> None:
        entry = self._files().get(name)
        if entry is None:
            raise PresetError(f"no preset named {name!r}")
        if entry[1]:
            raise PresetError(f"{name} ships with Hearth and cannot be deleted")
        entry[0].unlink(missing_ok=True)
