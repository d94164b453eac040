"""The Quant advisor tab: tick GGUF files, pick a reference, Run; a progress line and
one table (perplexity, KL divergence, agreement, speed, memory) fill in as each file is
measured. The run waits its turn in the generation queue (webui/modelfiles/advisor.py);
this module reads controls and shows the run."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.fields import SettingError
from webui.errors import UserError
from webui.hearth import Hearth
from webui.modelfiles.advisor import HEADERS, AdvisorRun, AdvisorSettings
from webui.ui.accounts import admin_refusal
from webui.ui.forms import components_for, values_to
from webui.ui.notices import notice

NO_REFERENCE = "(none: no KL divergence)"
POLL_SECONDS = 0.5


@dataclass
class AdvisorTab:
    files: gr.CheckboxGroup
    reference: gr.Dropdown
    settings: dict[str, Any]
    run: gr.Button
    stop: gr.Button
    refresh: gr.Button
    progress: gr.HTML
    status: gr.Markdown
    table: gr.Dataframe
    tab: gr.Tab


def layout(hearth: Hearth, tab: gr.Tab) -> AdvisorTab:
    gr.Markdown("Measure quantizations of a model **on this machine**: perplexity on a short built-in text, "
                "KL divergence and top-token agreement against a reference file of the same model (usually the "
                "largest), prompt (pp) and generation (tg) speed like llama-bench, and memory. Each file is loaded "
                "on its own and freed; the chat model stays loaded. A run waits for replies being generated, "
                "and replies wait for it.")
    labels = [c.label for c in hearth.gguf_choices()]
    with gr.Row():
        files = gr.CheckboxGroup(choices=labels, label="GGUF files to measure", scale=4, elem_id="advisor-files")
        refresh = gr.Button("🔄 Refresh", scale=1, size="sm", elem_id="advisor-refresh")
    reference = gr.Dropdown(choices=[NO_REFERENCE, *labels], value=NO_REFERENCE, label="Reference",
                            info="Measured first; the others are compared with it", elem_id="advisor-reference")
    with gr.Accordion("Measuring", open=False):
        with gr.Row():
            settings = components_for(AdvisorSettings, prefix="advisor")
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="advisor-run")
        stop = gr.Button("Stop", elem_id="advisor-stop")
    progress = gr.HTML(elem_id="advisor-progress")
    status = gr.Markdown(elem_id="advisor-status")
    table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, label="Results", elem_id="advisor-table")
    return AdvisorTab(files, reference, settings, run, stop, refresh, progress, status, table, tab)


def progress_html(run: AdvisorRun) -> str:
    p = run.progress
    if p is None:
        return ""
    line = p.line() + (f": {run.error}" if run.error else "")
    return (f"<progress value='{p.fraction * 100:.1f}' max='100' style='width:100%'></progress>"
            f"<div class='advisor-line'>{html.escape(line)}</div>")


def table_update(run: AdvisorRun) -> dict:
    return gr.update(value=run.cells(), headers=run.headers())


def wire(hearth: Hearth, tab: AdvisorTab) -> None:
    names = list(tab.settings)

    def start(chosen, reference, *values):
        try:
            hearth.require_admin("run the quant advisor (it loads models)")
            settings = values_to(AdvisorSettings, names, values)
            run = hearth.advise(chosen or [], None if reference in (None, NO_REFERENCE) else reference, settings)
        except (UserError, SettingError) as e:
            yield notice(e), gr.skip(), gr.skip()
            return
        yield from follow(run)

    def follow(run: AdvisorRun):
        while not run.done:
            yield "", progress_html(run), table_update(run)
            time.sleep(POLL_SECONDS)
        status = {"done": "✅ Done.", "stopped": "Stopped: the rows measured so far are kept."}.get(
            run.state, notice(run.error or "the run failed"))
        yield status, progress_html(run), table_update(run)

    def stop():
        refused = admin_refusal(hearth, "stop the quant advisor")
        if refused is not None:
            return notice(refused)
        run = hearth.advisor.current
        if run is not None and not run.done:
            run.stop()
            return "Stopping after the current step…"
        return "No advisor run is going."

    def refresh():
        labels = [c.label for c in hearth.gguf_choices()]
        run = hearth.advisor.current
        shown = table_update(run) if run is not None else gr.skip()
        return (gr.update(choices=labels), gr.update(choices=[NO_REFERENCE, *labels]),
                progress_html(run) if run is not None else "", shown)

    tab.run.click(start, [tab.files, tab.reference, *tab.settings.values()], [tab.status, tab.progress, tab.table],
                  concurrency_limit=4)
    tab.stop.click(stop, None, [tab.status], queue=False)
    outputs = [tab.files, tab.reference, tab.progress, tab.table]
    tab.refresh.click(refresh, None, outputs, queue=False)
    tab.tab.select(refresh, None, outputs, queue=False)
