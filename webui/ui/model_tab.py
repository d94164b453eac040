"""The Model tab: pick a file, a loader (proposed from the file's format) and its
options (generated from the loader's Options dataclass); load and unload."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

import loaders
from loaders.fields import describe
from loaders.lora import parse_entries
from webui.errors import UserError
from webui.hearth import Hearth
from webui.modelfiles.local import fit_proposal
from webui.runtime.load_progress import LoadReport
from webui.ui.accounts import admin_refusal
from webui.ui.forms import components_for, values_to
from webui.ui.idle_notice import idle_status
from webui.ui.notices import notice
from webui.ui.parameters_tab import supported_updates


@dataclass
class ModelTab:
    model: gr.Dropdown
    refresh: gr.Button
    loader: gr.Dropdown
    groups: dict[str, gr.Column]
    options: dict[str, dict[str, Any]]  # loader -> option name -> control
    load: gr.Button
    unload: gr.Button
    status: gr.Markdown
    tab: gr.Tab
    fit: gr.Markdown | None = None  # will-it-fit for the chosen model (webui.modelfiles.fit)
    apply_lora: gr.Button | None = None  # the loaded model's `lora` option, applied without reloading


def status_text(hearth: Hearth) -> str:
    loaded = hearth.models.current
    if loaded is None:
        return idle_status(hearth) or "No model loaded."
    text = (f"**Loaded:** {loaded.name} · {loaded.loader} · context {loaded.model.context_length} "
            f"tokens · loaded in {loaded.load_seconds:.1f}s")
    note = getattr(loaded.model, "load_note", None)  # how a loader adapted to this machine (ExLlamaV2 unpaged)
    if note:
        text += f"\n\n**Note:** {html.escape(note)}"
    adapters = parse_entries(getattr(loaded.options, "lora", ()))
    if adapters:
        text += "\n\n**LoRA:** " + ", ".join(f"{html.escape(a.path.name)} ×{a.scale:g}" for a in adapters)
    template = hearth.chat_template()
    if template is not None:
        # Escaped: Markdown would take a marker such as <start_of_turn> for an HTML tag.
        text += f"\n\n**Chat template:** {template.name}: {html.escape(template.reason)}"
    stats = hearth.engine.last_stats
    if stats is not None:
        text += f"\n\n**Last reply:** {stats.summary()}"
    return text


def layout(hearth: Hearth, tab: gr.Tab) -> ModelTab:
    choices = [c.label for c in hearth.model_choices()]
    current = hearth.models.current
    with gr.Row():
        model = gr.Dropdown(choices=choices, value=current.name if current else (choices[0] if choices else None),
                            label="Model", info="The built-in model, or a file or folder in models/",
                            scale=6, allow_custom_value=True, elem_id="model-choice")
        refresh = gr.Button("🔄 Refresh", scale=1, size="sm")
    fit_line = gr.Markdown(elem_id="model-fit")
    first = current.loader if current else loaders.names()[0]
    loader = gr.Dropdown(choices=loaders.names(), value=first, label="Loader", elem_id="model-loader")
    groups, options = {}, {}
    for name in loaders.names():
        cls, prefix = loaders.get(name).Options, f"opt-{name.replace('.', '')}"
        with gr.Column(visible=name == first) as group:
            gr.Markdown(f"**{name}**: {loaders.get(name).description}")
            options[name] = components_for(cls, advanced=False, prefix=prefix)
            if any(s.advanced for s in describe(cls)):
                with gr.Accordion("Advanced options", open=False):
                    options[name].update(components_for(cls, advanced=True, prefix=prefix))
        groups[name] = group
    with gr.Row():
        load = gr.Button("Load", variant="primary", elem_id="model-load")
        unload = gr.Button("Unload", elem_id="model-unload")
        apply_lora = gr.Button("Apply LoRA", elem_id="model-apply-lora")
    status = gr.Markdown(status_text(hearth), elem_id="model-status")
    return ModelTab(model, refresh, loader, groups, options, load, unload, status, tab, fit_line, apply_lora)


def wire(hearth: Hearth, tab: ModelTab, params: dict[str, Any]) -> None:
    loader_names = list(tab.options)
    flat = [(name, opt, comp) for name in loader_names for opt, comp in tab.options[name].items()]
    param_outputs = list(params.values())

    def propose_loader(label: str):
        detected = loaders.detect(hearth.resolve_model(label)) if label else None
        return gr.update(value=detected) if detected else gr.skip()

    def show_group(name: str):
        return [gr.update(visible=n == name) for n in loader_names]

    # Gradio finds its progress bar by a positional parameter's default, so it comes
    # before the option values; it is drawn over the status line while the model loads.
    def load(label: str, loader_name: str, progress=gr.Progress(), *values):
        chosen = {opt: v for (name, opt, _), v in zip(flat, values, strict=True) if name == loader_name}

        def show(report: LoadReport) -> None:
            progress(report.fraction, desc=report.summary())

        try:
            hearth.require_admin("load models")
            options = values_to(loaders.get(loader_name).Options, list(chosen), list(chosen.values()))
            hearth.load_model(label, loader_name, options, progress=show)
        except UserError as e:
            gr.Warning(str(e))
            return [f"{notice(e)}\n\n{status_text(hearth)}", *supported_updates(params, _supported(hearth))]
        return [status_text(hearth), *supported_updates(params, _supported(hearth))]

    def unload():
        refused = admin_refusal(hearth, "unload models")
        if refused is not None:
            return f"{notice(refused)}\n\n{status_text(hearth)}"
        hearth.unload_model()
        return status_text(hearth)

    def refresh():
        return gr.update(choices=[c.label for c in hearth.model_choices()])

    # The loaded model's loader's `lora` field, applied to it without reloading.
    lora_loaders = [name for name in loader_names if "lora" in tab.options[name]]

    def apply_lora(*texts):
        loaded = hearth.models.current
        name = loaded.loader if loaded is not None else None
        try:
            hearth.require_admin("change LoRA adapters")
            entries = ()
            if name in lora_loaders:
                entries = values_to(loaders.get(name).Options, ["lora"], [texts[lora_loaders.index(name)]]).lora
            hearth.set_adapters(entries)
        except UserError as e:
            gr.Warning(str(e))
            return f"{notice(e)}\n\n{status_text(hearth)}"
        return status_text(hearth)

    tab.model.change(propose_loader, [tab.model], [tab.loader], queue=False)
    tab.loader.change(show_group, [tab.loader], list(tab.groups.values()), queue=False)
    tab.load.click(load, [tab.model, tab.loader, *[c for _, _, c in flat]],
                   [tab.status, *param_outputs], concurrency_limit=1, show_progress_on=[tab.status])
    tab.unload.click(unload, None, [tab.status], concurrency_limit=1)
    if tab.apply_lora is not None:
        tab.apply_lora.click(apply_lora, [tab.options[name]["lora"] for name in lora_loaders], [tab.status],
                             concurrency_limit=1)
    tab.refresh.click(refresh, None, [tab.model], queue=False)
    tab.tab.select(lambda: status_text(hearth), None, [tab.status], queue=False)
    _wire_fit(hearth, tab)


def _wire_fit(hearth: Hearth, tab: ModelTab) -> None:
    """Show the chosen model's memory estimate; propose n_gpu_layers from it on a GPU."""
    llama = tab.options.get("llama.cpp", {})
    n_ctx, gpu_layers = llama.get("n_ctx"), llama.get("n_gpu_layers")
    type_k, type_v = llama.get("type_k"), llama.get("type_v")
    if tab.fit is None or n_ctx is None or gpu_layers is None or type_k is None or type_v is None:
        return

    def show_fit(label: str, ctx, k: str, v: str):
        text, layers = fit_proposal(hearth.resolve_model(label) if label else None, int(ctx or 0),
                                    type_k=k or "f16", type_v=v or "f16")
        return text, gr.update(value=layers) if layers is not None else gr.skip()

    for event in (tab.model.change, n_ctx.change, type_k.change, type_v.change, tab.tab.select):
        event(show_fit, [tab.model, n_ctx, type_k, type_v], [tab.fit, gpu_layers], queue=False)


def _supported(hearth: Hearth):
    loaded = hearth.models.current
    return loaded.model.supported_params if loaded else None
