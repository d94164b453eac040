"""The Parameters tab: every sampler, generated from GenerationParams."""
from __future__ import annotations

from typing import Any

import gradio as gr

from loaders.params import CORE_PARAMS, GenerationParams
from webui.ui.forms import components_for


def layout() -> dict[str, Any]:
    gr.Markdown("Sampler settings used by Chat. Settings the loaded model does not honour are greyed out.")
    with gr.Row():
        with gr.Column():
            params = components_for(GenerationParams, advanced=False, prefix="param")
        with gr.Column():
            with gr.Accordion("Advanced samplers", open=False):
                params.update(components_for(GenerationParams, advanced=True, prefix="param"))
    return params


def supported_updates(params: dict[str, Any], supported: frozenset[str] | None) -> list:
    """Grey out what the loaded model ignores, and say why in the control's info line."""
    out = []
    for name in params:
        ok = supported is None or name in supported or name in CORE_PARAMS
        out.append(gr.update(interactive=ok))
    return out
