"""The Parameters tab: every sampler, generated from GenerationParams, and presets
(YAML files in presets/; the user saves their own). Settings the loaded model does
not honour are greyed out, and their note says why."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.fields import SettingError, describe
from loaders.params import CORE_PARAMS, GenerationParams
from webui.chat.structured import json_object_grammar, schema_text_grammar
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui.forms import components_for, format_stop_strings, values_to
from webui.ui.notices import notice
from webui.userdata.presets import PresetError

_SPECS = {s.name: s for s in describe(GenerationParams)}
UNSUPPORTED_NOTE = "⚠ Not used by the loaded model's backend."
JSON_OFF, JSON_OBJECT, JSON_SCHEMA = "off", "JSON object", "JSON schema"
JSON_MODES = {JSON_OFF: "", JSON_OBJECT: "any JSON object", JSON_SCHEMA: "the JSON schema"}


@dataclass
class PresetControls:
    choice: gr.Dropdown
    name: gr.Textbox
    save: gr.Button
    status: gr.Markdown


def preset_layout(hearth: Hearth) -> PresetControls:
    settings = hearth.space().settings.load()
    names = hearth.space().presets.names()
    with gr.Row(equal_height=True):
        choice = gr.Dropdown(names, value=settings.preset if settings.preset in names else None,
                             label="Preset", scale=3, elem_id="preset-choice",
                             info="Sets every sampler; reply length, stop strings, grammar and seed stay yours.")
        name = gr.Textbox(label="Save the current settings as", scale=3, elem_id="preset-name",
                          placeholder="my preset")
        save = gr.Button("Save preset", scale=1, elem_id="preset-save")
    status = gr.Markdown("", elem_id="preset-status")
    return PresetControls(choice, name, save, status)


def layout() -> dict[str, Any]:
    gr.Markdown("Sampler settings used by Chat and Notebook. Settings the loaded model does not "
                "honour are greyed out.")
    with gr.Row():
        with gr.Column():
            params = components_for(GenerationParams, advanced=False, prefix="param")
            json_mode = json_mode_layout()
        with gr.Column():
            with gr.Accordion("Advanced samplers", open=False):
                params.update(components_for(GenerationParams, advanced=True, prefix="param"))
    # JSON mode writes only the grammar control, which Chat and Notebook already read.
    wire_json_mode(json_mode, params["grammar"])
    return params


@dataclass
class JsonModeControls:
    mode: gr.Radio
    schema: gr.Textbox
    status: gr.Markdown
    written: gr.State  # the grammar JSON mode last wrote ("" = none)


def json_mode_layout() -> JsonModeControls:
    mode = gr.Radio(list(JSON_MODES), value=JSON_OFF, label="JSON mode", elem_id="json-mode",
                    info="Constrain Chat and Notebook replies to JSON (a grammar, as the API's "
                         "response_format does); needs a GGUF model (llama.cpp).")
    schema = gr.Textbox(label="JSON schema", lines=4, max_lines=20, elem_id="json-schema",
                        placeholder='{"type": "object", "properties": {"name": {"type": "string"}}, '
                                    '"required": ["name"]}')
    status = gr.Markdown("", elem_id="json-mode-status")
    return JsonModeControls(mode, schema, status, gr.State(""))


def json_mode_grammar(mode: str, schema_text: str, grammar: str, written: str) -> tuple[Any, str, str]:
    """(the grammar control's update, the grammar now written, the status line). A
    grammar the user wrote is kept when the mode is off; a bad schema clears the one
    JSON mode wrote, so no reply follows a stale schema."""
    ours = grammar == written
    if mode == JSON_OFF:
        return ("" if ours else gr.skip()), "", ""
    try:
        new = json_object_grammar() if mode == JSON_OBJECT else schema_text_grammar(schema_text)
    except UserError as e:
        return ("" if ours else gr.skip()), "", notice(e, "Replies are not constrained: ")
    replaced = " (it replaces the grammar that was there)" if grammar and not ours else ""
    return new, new, f"Replies follow {JSON_MODES[mode]}{replaced}."


def wire_json_mode(controls: JsonModeControls, grammar: gr.Textbox) -> None:
    inputs = [controls.mode, controls.schema, grammar, controls.written]
    outputs = [grammar, controls.written, controls.status]
    controls.mode.change(json_mode_grammar, inputs, outputs, queue=False)
    controls.schema.change(json_mode_grammar, inputs, outputs, queue=False)


def control_value(name: str, value: Any) -> Any:
    """A parameter's value as its generated control shows it."""
    return format_stop_strings(value) if _SPECS[name].type is tuple else value


def supported_updates(params: dict[str, Any], supported: frozenset[str] | None) -> list:
    """Grey out what the loaded model ignores, and say why in the control's note."""
    out = []
    for name in params:
        ok = supported is None or name in supported or name in CORE_PARAMS
        info = _SPECS[name].help if ok else f"{UNSUPPORTED_NOTE} {_SPECS[name].help}"
        out.append(gr.update(interactive=ok, info=info))
    return out


def wire(hearth: Hearth, presets: PresetControls, params: dict[str, Any],
         demo: gr.Blocks | None = None) -> None:
    names = list(params)
    controls = list(params.values())

    def apply(preset: str, *values):
        if not preset:
            return [gr.skip()] * len(names) + [""]
        try:
            current = values_to(GenerationParams, names, values)
        except SettingError:
            current = GenerationParams()  # a half-typed value must not block switching
        try:
            new = hearth.space().presets.apply(preset, current)
            hearth.space().settings.update(preset=preset)
        except (UserError, OSError) as e:
            return [gr.skip()] * len(names) + [notice(e)]
        return [control_value(n, getattr(new, n)) for n in names] + [f"Preset **{preset}** applied."]

    def save(name: str, *values):
        try:
            current = values_to(GenerationParams, names, values)
            saved = hearth.space().presets.save(name, current)
            hearth.space().settings.update(preset=saved)
        except (UserError, OSError) as e:
            return gr.skip(), notice(e)
        return (gr.update(choices=hearth.space().presets.names(), value=saved),
                f"Saved preset **{saved}** to {hearth.space().presets.user_dir}.")

    def on_load():
        """A new page shows the saved preset's settings, and greys out what the model ignores."""
        preset = hearth.space().settings.load().preset
        loaded = hearth.models.current
        grey = supported_updates(params, loaded.model.supported_params if loaded else None)
        choices = hearth.space().presets.names()
        if preset not in choices:
            return [gr.update(choices=choices, value=None), *grey]
        try:
            new = hearth.space().presets.apply(preset)
        except PresetError:
            return [gr.update(choices=choices, value=None), *grey]
        return [gr.update(choices=choices, value=preset),
                *[{**g, "value": control_value(n, getattr(new, n))} for g, n in zip(grey, names, strict=True)]]

    presets.choice.input(apply, [presets.choice, *controls], [*controls, presets.status], queue=False)
    presets.save.click(save, [presets.name, *controls], [presets.choice, presets.status], queue=False)
    if demo is not None:
        demo.load(on_load, None, [presets.choice, *controls], queue=False)
