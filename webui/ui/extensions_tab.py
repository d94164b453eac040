"""The Extensions tab (every extension found: a switch, what it does, its state or
its error) and the extensions' own tabs.

Gradio builds the page once, so every loadable extension's tab is built at start
and shown only while the extension is on; switching one on here shows its tab at
once (and in other browsers at their next page load). Switches are remembered in
the user data folder.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.errors import UserError
from webui.extensions import Extension
from webui.hearth import Hearth
from webui.ui.notices import notice

INTRO = ("Extensions add tabs, API routes and steps around each reply. Switch one on or off "
         "here (remembered next time) or start Hearth with `--extensions NAME ...`. An extension "
         "that fails is switched off and its error shown here; the rest of Hearth keeps working. "
         "How to write one: `docs/EXTENSIONS.md`.")


@dataclass
class ExtensionsTab:
    toggles: dict[str, gr.Checkbox]
    statuses: dict[str, gr.Markdown]
    refresh: gr.Button


def status_line(ext: Extension) -> str:
    if not ext.loadable:
        return notice(ext.error, "cannot be loaded: ")
    if ext.enabled:
        return "✅ on"
    if ext.error:
        return notice(ext.error, "switched off after an error: ")
    return "off"


def add_extension_tabs(hearth: Hearth) -> dict[str, gr.Tab]:
    """One tab per loadable extension that has ui_tab, visible while it is on. Call
    inside the page's Blocks, where the other tabs are laid out."""
    tabs = {}
    manager = hearth.extensions
    for ext in manager.with_hook("ui_tab"):
        with gr.Tab(ext.title, id=f"ext-{ext.name}", visible=ext.enabled,
                    elem_id=f"ext-tab-{ext.name}") as tab:
            if not manager.build_tab(ext, tab):
                gr.Markdown(notice(ext.error, "This extension's tab failed: "))
        tabs[ext.name] = tab
    return tabs


def layout(hearth: Hearth) -> ExtensionsTab:
    gr.Markdown(INTRO)
    toggles, statuses = {}, {}
    extensions = hearth.extensions.list()
    if not extensions:
        gr.Markdown("No extensions found in `extensions/`.")
    for ext in extensions:
        with gr.Row(equal_height=True):
            toggles[ext.name] = gr.Checkbox(
                value=ext.enabled, label=f"{ext.title} ({ext.name})", info=ext.description or None,
                interactive=ext.loadable, scale=3, elem_id=f"ext-toggle-{ext.name}")
            statuses[ext.name] = gr.Markdown(status_line(ext), elem_id=f"ext-status-{ext.name}")
    refresh = gr.Button("Refresh", size="sm", elem_id="ext-refresh")
    return ExtensionsTab(toggles, statuses, refresh)


def wire(hearth: Hearth, tab: ExtensionsTab, ext_tabs: dict[str, gr.Tab], demo: gr.Blocks) -> None:
    manager = hearth.extensions
    names = list(tab.toggles)

    def tab_update(ext: Extension):
        return gr.update(visible=ext.enabled)

    def toggle(name: str):
        def handler(on: bool):
            try:
                hearth.require_admin("switch extensions on or off")
                ext = manager.enable(name) if on else manager.disable(name)
            except UserError as e:  # ExtensionError, or NotAllowed for a non-admin
                ext = manager.get(name)
                gr.Warning(str(e))
                if not ext.error:
                    ext.error = str(e)
            outputs = [gr.update(value=ext.enabled), status_line(ext)]
            if name in ext_tabs:
                outputs.append(tab_update(ext))
            return outputs
        return handler

    def refresh():
        """Every switch, state and tab as it is now (faults switch extensions off)."""
        out = []
        for name in names:
            ext = manager.get(name)
            out += [gr.update(value=ext.enabled), status_line(ext)]
        out += [tab_update(manager.get(name)) for name in ext_tabs]
        return out

    for name in names:
        outputs = [tab.toggles[name], tab.statuses[name]]
        if name in ext_tabs:
            outputs.append(ext_tabs[name])
        # Setting up an extension may take seconds (documents loads a model): queued.
        tab.toggles[name].input(toggle(name), [tab.toggles[name]], outputs, show_progress="minimal")
    everything = [c for name in names for c in (tab.toggles[name], tab.statuses[name])] + list(ext_tabs.values())
    tab.refresh.click(refresh, None, everything, queue=False)
    demo.load(refresh, None, everything, queue=False)


def warn_browser(name: str, message: str) -> None:
    """Fault listener: tell the user whose request met the fault. The notice stays
    until dismissed (duration=None): losing a feature mid-chat is worth a look, and a
    10 s toast could vanish while a long reply was still streaming."""
    gr.Warning(f"Extension {name} was switched off: {message}", duration=None)
