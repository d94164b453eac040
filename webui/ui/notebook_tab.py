"""The Notebook tab: raw completion on a text box. The model continues the text in
place, streaming; Stop ends it; the token count says how much of the context the
notebook fills."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.params import GenerationParams
from webui.errors import UserError
from webui.hearth import Hearth
from webui.runtime.generation import Finished
from webui.ui.forms import values_to
from webui.ui.idle_notice import announce_reload
from webui.ui.notices import notice
from webui.ui.session import BrowserSession
from webui.ui.streaming import end_status, stream_job


@dataclass
class NotebookTab:
    text: gr.Textbox
    generate: gr.Button
    stop: gr.Button
    count: gr.Button
    status: gr.Markdown


def layout() -> NotebookTab:
    text = gr.Textbox(lines=18, max_lines=60, show_label=False, elem_id="notebook-text",
                      placeholder="Write the beginning of something; the model continues it here.")
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id="notebook-generate")
        stop = gr.Button("Stop", variant="stop", elem_id="notebook-stop")
        count = gr.Button("Count tokens", elem_id="notebook-count")
    status = gr.Markdown("", elem_id="notebook-status")
    return NotebookTab(text, generate, stop, count, status)


def _context(hearth: Hearth) -> str:
    loaded = hearth.models.current
    return f" of {loaded.model.context_length}" if loaded else ""


def wire(hearth: Hearth, tab: NotebookTab, session: gr.State, params: dict[str, Any]) -> None:
    names = list(params)

    def generate(text: str, s: BrowserSession, *values):
        if s.notebook_job is not None:
            s.notebook_job.stop()
        if not text.strip():
            yield gr.skip(), "Write the beginning of something first; the model continues it."
            return
        announce_reload(hearth)
        try:
            gen = values_to(GenerationParams, names, values)
            job = hearth.complete(text, gen)
        except UserError as e:
            yield gr.skip(), notice(e)
            return
        s.notebook_job = job
        yield gr.skip(), "…"
        for out, end in stream_job(job):
            if end is None:
                yield text + out, gr.skip()
                continue
            status = end_status(end)
            st = end.stats if isinstance(end, Finished) else None
            if st is not None and st.prompt_tokens:
                status = f"{st.prompt_tokens + st.completion_tokens} tokens in the notebook{_context(hearth)} · {status}"
            yield text + out, status

    def stop(s: BrowserSession):
        if s.notebook_job is not None:
            s.notebook_job.stop()

    def count(text: str):
        announce_reload(hearth)
        try:
            return f"{hearth.count_tokens(text)} tokens in the notebook{_context(hearth)}"
        except UserError as e:
            return notice(e)

    tab.generate.click(generate, [tab.text, session, *params.values()], [tab.text, tab.status],
                       concurrency_limit=None, show_progress="hidden")
    tab.stop.click(stop, [session], None, queue=False)
    tab.count.click(count, [tab.text], [tab.status], concurrency_limit=None, show_progress="hidden")
