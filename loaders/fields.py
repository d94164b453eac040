"""Declare a setting once: a dataclass field with its help text and bounds.

`GenerationParams` and every loader's `Options` are plain dataclasses whose fields
are made with `setting()`. The UI, the CLI and the API all read the same metadata
through `describe()`, and every face validates through `build()`, so a bound or a
help line is written in exactly one place.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loaders.errors import ErrorKind, UserError


class SettingError(UserError, ValueError):
    """A user-supplied setting is out of range or of the wrong type (one line)."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class SettingSpec:
    name: str
    type: type  # int, float, bool, str, or tuple (a list of strings)
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[Any, ...] | None = None
    step: float | None = None
    ui_maximum: float | None = None  # a slider's end when the real bound is open
    max_length: int | None = None  # the most characters a text setting may hold
    advanced: bool = False
    # The command line's view (the UI ignores these):
    flag: str = ""  # "--models-dir"; an alias where the name reads badly as a flag
    env: str | None = None  # an environment variable that stands in when the flag is not given
    metavar: str | None = None  # what --help shows for the value: DIR, USER:PASSWORD, ...
    group: str | None = None  # the --help section it is listed in
    nargs: str | None = None  # "+": a list setting takes several values after one flag
    separator: str | None = None  # a list setting also given as one text, e.g. "a,b"
    positional: bool = False  # given without a flag (`hearth download ORG/REPO`)


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    choices: tuple[Any, ...] | None = None,
    step: float | None = None,
    ui_maximum: float | None = None,
    max_length: int | None = None,
    advanced: bool = False,
    flag: str | None = None,
    env: str | None = None,
    metavar: str | None = None,
    group: str | None = None,
    nargs: str | None = None,
    separator: str | None = None,
    positional: bool = False,
) -> Any:
    meta = dict(
        help=help,
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_minimum,
        choices=choices,
        step=step,
        ui_maximum=ui_maximum,
        max_length=max_length,
        advanced=advanced,
        flag=flag,
        env=env,
        metavar=metavar,
        group=group,
        nargs=nargs,
        separator=separator,
        positional=positional,
    )
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def _base_type(annotation: Any) -> type:
    """int | None -> int; tuple[str, ...] -> tuple."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return tuple
    return annotation


# Cached: GenerationParams is validated on every request, and resolving the type
# hints each time cost 1-4 ms per API call (measured on the API's request path).
@functools.cache
def describe(cls: type) -> tuple[SettingSpec, ...]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        m = f.metadata
        specs.append(
            SettingSpec(
                name=f.name,
                type=_base_type(hints[f.name]),
                default=default,
                help=m["help"],
                minimum=m["minimum"],
                maximum=m["maximum"],
                exclusive_minimum=m["exclusive_minimum"],
                choices=m["choices"],
                step=m["step"],
                ui_maximum=m["ui_maximum"],
                max_length=m.get("max_length"),
                advanced=m["advanced"],
                flag=m.get("flag") or "--" + f.name.replace("_", "-"),
                env=m.get("env"),
                metavar=m.get("metavar"),
                group=m.get("group"),
                nargs=m.get("nargs"),
                separator=m.get("separator"),
                positional=m.get("positional", False),
            )
        )
    return tuple(specs)


def _coerce(spec: SettingSpec, value: Any) -> Any:
    t = spec.type
    try:
        if t is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if t is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(value)
        if t is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
            return out
        if t is tuple:
            items = ((value,) if value else ()) if isinstance(value, str) else tuple(value)
            if not all(isinstance(v, str) for v in items):
                raise ValueError
            if spec.separator:
                return tuple(part.strip() for v in items for part in v.split(spec.separator) if part.strip())
            return items
        if t is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    else:
        return value
    kind = {bool: "true or false", int: "a whole number", float: "a number",
            tuple: "a list of strings", str: "text"}.get(t, t.__name__)
    raise SettingError(f"{spec.name} must be {kind} (got {value!r})")


def check(spec: SettingSpec, value: Any) -> None:
    if value is None:
        return
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(repr(c) for c in spec.choices)
        raise SettingError(f"{spec.name} must be one of {allowed} (got {value!r})")
    if spec.minimum is not None:
        if spec.exclusive_minimum and not value > spec.minimum:
            raise SettingError(f"{spec.name} must be greater than {spec.minimum:g} (got {value!r})")
        if value < spec.minimum:
            raise SettingError(f"{spec.name} must be at least {spec.minimum:g} (got {value!r})")
    if spec.maximum is not None and value > spec.maximum:
        raise SettingError(f"{spec.name} must be at most {spec.maximum:g} (got {value!r})")
    # Not the value itself: a text over its bound is too long to quote in one line.
    if spec.max_length is not None and isinstance(value, str) and len(value) > spec.max_length:
        raise SettingError(f"{spec.name} must be at most {spec.max_length:,} characters (got {len(value):,})")


def validate(instance: Any) -> None:
    """Check every declared bound of a dataclass instance; raise SettingError on the first."""
    for spec in describe(type(instance)):
        check(spec, getattr(instance, spec.name))


def build(cls: type, values: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """Make a validated `cls` from user-supplied values (strings from a CLI are fine).

    Unknown names are refused rather than ignored: a typo in a sampler name that is
    silently dropped is the kind of error users never find.
    """
    merged = {**(values or {}), **overrides}
    specs = {s.name: s for s in describe(cls)}
    unknown = sorted(set(merged) - set(specs))
    if unknown:
        raise SettingError(f"unknown setting {unknown[0]!r} for {cls.__name__}")
    kwargs = {}
    for name, value in merged.items():
        if value is None:
            continue
        kwargs[name] = _coerce(specs[name], value)
    instance = cls(**kwargs)
    validate(instance)
    return instance


def to_dict(instance: Any) -> dict[str, Any]:
    out = dataclasses.asdict(instance)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
