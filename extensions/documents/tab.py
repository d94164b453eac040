"""The Documents tab: add and remove files, tune retrieval, and see what the model
saw in the last message, with the text that came from files marked."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr

from webui.extensions.api import ExtensionContext

from .chunking import FILE_TYPES, DocumentError
from .library import DocumentLibrary

INTRO = ("Add text, Markdown or PDF files. For each chat message, the passages that match it best "
         "are added to the prompt, **quoted as untrusted data** (a file cannot give the model "
         "orders), and the reply lists its sources. Files stay on this machine.")
HEARTH = "Hearth's note to the model"
YOURS = "your message"


def _rows(library: Callable[[], DocumentLibrary]) -> tuple[list[list], list[str]]:
    try:
        summary = library().summary()
    except DocumentError:
        summary = []
    return [[name, count] for name, count in summary], [name for name, _ in summary]


def last_prompt_value(pieces: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    out = []
    for text, origin in pieces:
        if origin is None:
            out.append((text, HEARTH))
        elif origin == "user":
            out.append((text, YOURS))
        else:
            out.append((text, f"from {origin} (untrusted)"))
    return out


def build_tab(ctx: ExtensionContext, library: Callable[[], DocumentLibrary],
              last_prompt: Callable[[], list[tuple[str, str | None]]]) -> None:
    """Built once for every browser: it starts empty and fills in, for the user who
    opens it, when the tab is selected (never with whoever's data was there at build)."""
    from . import script

    gr.Markdown(INTRO)
    upload = gr.File(label="Add files (.txt, .md, .pdf)", file_count="multiple", file_types=list(FILE_TYPES),
                     elem_id="documents-upload")
    status = gr.Markdown("", elem_id="documents-status")
    table = gr.Dataframe(value=[], headers=["File", "Passages"], interactive=False, elem_id="documents-list")
    with gr.Row(equal_height=True):
        chosen = gr.Dropdown([], value=None, label="Remove a file", scale=3, elem_id="documents-remove-choice")
        remove = gr.Button("Remove", size="sm", scale=1, elem_id="documents-remove")
    with gr.Row():
        top_k = gr.Slider(1, 8, value=int(ctx.get_setting("top_k", script.DEFAULT_TOP_K)), step=1,
                          label="Passages per message", elem_id="documents-top-k")
        min_score = gr.Slider(0.0, 1.0, value=float(ctx.get_setting("min_score", script.DEFAULT_MIN_SCORE)),
                              step=0.05, label="Least similarity to use a passage",
                              info="0.25 skips passages unrelated to the message", elem_id="documents-min-score")
    seen = gr.HighlightedText(value=[], show_legend=True,
                              label="What the model saw in the last message (text from files is marked)",
                              elem_id="documents-last-prompt",
                              color_map={HEARTH: "gray", YOURS: "green"})

    def refresh():
        rows, names = _rows(library)
        # The sliders too: each user has their own (ctx's settings follow the user).
        return (rows, gr.update(choices=names, value=None), last_prompt_value(last_prompt()),
                int(ctx.get_setting("top_k", script.DEFAULT_TOP_K)),
                float(ctx.get_setting("min_score", script.DEFAULT_MIN_SCORE)))

    def add(paths):
        if not paths:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        lines = script.add_files([Path(p) for p in paths])
        rows, names = _rows(library)
        return "  \n".join(lines), rows, gr.update(choices=names, value=None), None

    def drop(name):
        if not name:
            return "Choose a file to remove.", gr.skip(), gr.skip()
        try:
            found = library().remove(name)
        except DocumentError as e:
            return f"⚠️ {e}", gr.skip(), gr.skip()
        rows, names = _rows(library)
        note = f"Removed {name}." if found else f"{name} was not in the library."
        return note, rows, gr.update(choices=names, value=None)

    upload.upload(add, [upload], [status, table, chosen, upload])
    remove.click(drop, [chosen], [status, table, chosen])
    top_k.change(lambda v: ctx.set_setting("top_k", int(v)), [top_k], None, queue=False)
    min_score.change(lambda v: ctx.set_setting("min_score", float(v)), [min_score], None, queue=False)
    if ctx.tab is not None:
        ctx.tab.select(refresh, None, [table, chosen, seen, top_k, min_score], queue=False)
