"""Gradio controls generated from a settings dataclass, and back again.

This is the only place that turns a `SettingSpec` into a widget; tabs never list a
sampler or a loader option by hand."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import gradio as gr

from loaders.fields import SettingError, SettingSpec, build, describe


def format_stop_strings(stops: Sequence[str]) -> str:
    return ", ".join(json.dumps(s) for s in stops)


def parse_stop_strings(text: str) -> tuple[str, ...]:
    """`"\\nUser:", "###"` -> ('\\nUser:', '###'): JSON strings, comma-separated,
    so a stop string can hold a newline or a comma."""
    text = (text or "").strip()
    if not text:
        return ()
    try:
        values = json.loads(f"[{text}]")
    except json.JSONDecodeError:
        raise SettingError('stop strings must be quoted and comma-separated, like "\\nUser:", "###"') from None
    if not all(isinstance(v, str) for v in values):
        raise SettingError("stop strings must be quoted text")
    return tuple(values)


def component_for(spec: SettingSpec, value: Any = None, prefix: str = "setting") -> gr.components.Component:
    value = spec.default if value is None else value
    common = dict(label=spec.name, info=spec.help, elem_id=f"{prefix}-{spec.name}")
    if spec.choices is not None:
        return gr.Dropdown(choices=list(spec.choices), value=value, **common)
    if spec.type is bool:
        return gr.Checkbox(value=value, **common)
    if spec.type is tuple:
        return gr.Textbox(value=format_stop_strings(value), **common)
    if spec.type is str:
        return gr.Textbox(value=value, lines=2 if spec.advanced else 1, **common)
    # A slider ends at the hard bound or at where a slider stops being usable (n_ctx
    # may go to 2**24, a slider that long cannot pick 4096), whichever comes first.
    ends = [end for end in (spec.maximum, spec.ui_maximum) if end is not None]
    top = min(ends) if ends else None
    if spec.minimum is not None and top is not None:
        return gr.Slider(minimum=spec.minimum, maximum=top, value=value, step=spec.step, **common)
    return gr.Number(value=value, precision=0 if spec.type is int else None, **common)


def components_for(cls: type, advanced: bool | None = None,
                   prefix: str = "setting") -> dict[str, gr.components.Component]:
    """One control per field, each with the element id PREFIX-NAME; `advanced`
    picks the basic (False) or advanced (True) half."""
    out = {}
    for spec in describe(cls):
        if advanced is None or spec.advanced == advanced:
            out[spec.name] = component_for(spec, prefix=prefix)
    return out


def values_to(cls: type, names: Sequence[str], values: Sequence[Any]) -> Any:
    """Build a validated `cls` from the values of the controls named `names`."""
    specs = {s.name: s for s in describe(cls)}
    data = {}
    for name, value in zip(names, values, strict=True):
        if specs[name].type is tuple:
            value = parse_stop_strings(value)
        data[name] = value
    return build(cls, data)
