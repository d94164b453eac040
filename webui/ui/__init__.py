"""The Gradio face. Tabs are laid out first and wired after, because Chat reads the
controls that the Parameters tab owns."""
from __future__ import annotations

import gradio as gr

from webui.config import ServerSettings
from webui.hearth import Hearth
from webui.ui import (
    accounts,
    advisor_tab,
    character_tab,
    chat_tab,
    download_tab,
    extensions_tab,
    model_tab,
    notebook_tab,
    parameters_tab,
)
from webui.ui.accounts import use_event_users
from webui.ui.session import BrowserSession

CSS = """
#chat-status, #model-status { min-height: 1.5em; font-size: 0.9em; opacity: 0.85; }
"""
CSS += accounts.CSS + "\n"


def limit_text_inputs(demo: gr.Blocks, max_chars: int) -> None:
    """Every text box and code box takes at most `max_chars` characters: the browser
    stops typing there, and the server refuses a longer value (a client other than
    the page can send anything) with a one-line notice, before any handler sees it."""
    for block in demo.blocks.values():
        if not isinstance(block, (gr.Textbox, gr.Code)):
            continue
        if isinstance(block, gr.Textbox) and (block.max_length is None or block.max_length > max_chars):
            block.max_length = max_chars
        block.preprocess = _bounded(block.preprocess, max_chars, block.label)


def _bounded(preprocess, max_chars: int, label: str | None):
    def checked(payload):
        if isinstance(payload, str) and len(payload) > max_chars:
            raise gr.Error(f"{label or 'a text box'}: {len(payload)} characters is more than the "
                           f"{max_chars} this server takes (--max-prompt-chars)")
        return preprocess(payload)

    return checked


def build_ui(hearth: Hearth, max_text_chars: int = ServerSettings.max_prompt_chars) -> gr.Blocks:
    """The whole UI; no text box takes more than `max_text_chars` (a prompt's limit)."""
    use_event_users()  # a handler's current_user() is the Gradio event's logged-in user
    with gr.Blocks(title="Hearth") as demo:
        who = accounts.header(hearth)
        session = gr.State(BrowserSession())
        with gr.Tab("Chat", id="chat"):
            chat = chat_tab.layout(hearth)
        with gr.Tab("Notebook", id="notebook"):
            notebook = notebook_tab.layout()
        with gr.Tab("Character", id="character"):
            character = character_tab.layout(hearth)
        with gr.Tab("Parameters", id="parameters"):
            presets = parameters_tab.preset_layout(hearth)
            params = parameters_tab.layout()
        with gr.Tab("Model", id="model", elem_id="tab-model") as model_tab_block:
            model = model_tab.layout(hearth, model_tab_block)
        with gr.Tab("Download", id="download", elem_id="tab-download") as download_tab_block:
            download = download_tab.layout(download_tab_block)
        with gr.Tab("Quant advisor", id="advisor", elem_id="tab-advisor") as advisor_tab_block:
            advisor = advisor_tab.layout(hearth, advisor_tab_block)
        # Extensions: their own tabs, then the tab that lists and switches them.
        ext_tabs = extensions_tab.add_extension_tabs(hearth)
        with gr.Tab("Extensions", id="extensions"):
            extensions = extensions_tab.layout(hearth)
        chat_tab.wire(hearth, chat, session, params, demo)
        notebook_tab.wire(hearth, notebook, session, params)
        character_tab.wire(hearth, character, chat.character, demo)
        parameters_tab.wire(hearth, presets, params, demo)
        model_tab.wire(hearth, model, params)
        download_tab.wire(hearth, download, model.model)
        advisor_tab.wire(hearth, advisor)
        extensions_tab.wire(hearth, extensions, ext_tabs, demo)
        hearth.extensions.add_fault_listener(extensions_tab.warn_browser)
        # Models, downloads and extension switches are an admin's: hidden from others
        # here, and refused in each handler too.
        accounts.wire_roles(hearth, demo, who, [model_tab_block, download_tab_block, advisor_tab_block],
                            list(extensions.toggles.values()))
    limit_text_inputs(demo, max_text_chars)
    return demo
