"""The Download tab: list a Hugging Face repo (every file, grouped, with a will-it-fit
verdict per model), download chosen groups with a progress bar, and the Models view
of what is on disk (with delete). The work is done by core modules (hub, downloads,
local_models, fit); this module reads controls and shows results."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass

import gradio as gr

from loaders.gguf import KV_CACHE_TYPES
from webui.hearth import Hearth
from webui.modelfiles import fit
from webui.modelfiles.downloads import DownloadJob
from webui.modelfiles.hub import HubError, RepoListing, list_repo
from webui.modelfiles.local import delete, estimate_for, scan
from webui.ui.accounts import admin_refusal
from webui.ui.notices import notice

GROUP_HEADERS = ["Group", "Kind", "Quantization", "Size", "Estimate (RAM)", "Will it fit?"]
FILE_HEADERS = ["Group", "File", "Size"]
LOCAL_HEADERS = ["Model", "Format", "Quantization", "Size", "Estimate (RAM)", "Will it fit?"]
POLL_SECONDS = 0.25


@dataclass
class DownloadTab:
    repo: gr.Textbox
    revision: gr.Textbox
    token: gr.Textbox
    n_ctx: gr.Number
    list_files: gr.Button
    status: gr.Markdown
    groups: gr.Dataframe
    files: gr.Dataframe
    choose: gr.CheckboxGroup
    download: gr.Button
    stop: gr.Button
    progress: gr.HTML
    listing: gr.State
    local: gr.Dataframe
    local_choice: gr.Dropdown
    delete: gr.Button
    refresh: gr.Button
    local_status: gr.Markdown
    tab: gr.Tab
    kv_type: gr.Dropdown | None = None  # llama.cpp's type_k and type_v for the GGUF estimates


def layout(tab: gr.Tab) -> DownloadTab:
    gr.Markdown("Download a model from the Hugging Face Hub into `models/ORG_REPO/`. Every file is "
                "checked against the Hub's checksum; a stopped download resumes where it left off.")
    with gr.Row():
        repo = gr.Textbox(label="Repo", placeholder="HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", scale=4,
                          elem_id="download-repo")
        revision = gr.Textbox(label="Revision", value="main", scale=1, elem_id="download-revision")
        token = gr.Textbox(label="Token (gated repos)", type="password", scale=2, elem_id="download-token",
                           placeholder="hf_… (or set HF_TOKEN)")
        n_ctx = gr.Number(label="Context for estimates", value=4096, precision=0, minimum=0, scale=1,
                          elem_id="download-ctx")
        kv_type = gr.Dropdown(label="KV cache for estimates", choices=list(KV_CACHE_TYPES), value="f16", scale=1,
                              elem_id="download-kv-type", info="llama.cpp's type_k and type_v (GGUF models)")
    list_files = gr.Button("List files", variant="primary", elem_id="download-list")
    status = gr.Markdown(elem_id="download-status")
    groups = gr.Dataframe(headers=GROUP_HEADERS, interactive=False, wrap=True, label="Models in this repo",
                          elem_id="download-groups")
    with gr.Accordion("Every file", open=False):
        files = gr.Dataframe(headers=FILE_HEADERS, interactive=False, wrap=True, elem_id="download-files")
    choose = gr.CheckboxGroup(label="Download", choices=[], elem_id="download-choose")
    with gr.Row():
        download = gr.Button("Download", variant="primary", elem_id="download-start")
        stop = gr.Button("Stop", elem_id="download-stop")
    progress = gr.HTML(elem_id="download-progress")
    listing = gr.State(None)
    with gr.Accordion("Models on disk", open=True):
        local = gr.Dataframe(headers=LOCAL_HEADERS, interactive=False, wrap=True, elem_id="local-models")
        with gr.Row():
            local_choice = gr.Dropdown(label="Model", choices=[], scale=4, elem_id="local-choice")
            delete_btn = gr.Button("Delete", variant="stop", scale=1, elem_id="local-delete")
            refresh = gr.Button("🔄 Refresh", scale=1, elem_id="local-refresh")
        local_status = gr.Markdown(elem_id="local-status")
    return DownloadTab(repo, revision, token, n_ctx, list_files, status, groups, files, choose, download,
                       stop, progress, listing, local, local_choice, delete_btn, refresh, local_status, tab,
                       kv_type=kv_type)


def _verdict_cells(est: fit.Estimate | None, machine: fit.Machine) -> list[str]:
    if est is None:
        return ["?", "unknown (no header or config.json)"]
    return [fit.human_bytes(est.total_bytes), fit.verdict(est, machine).text]


def listing_rows(listing: RepoListing, n_ctx: int, machine: fit.Machine,
                 kv_type: str = "f16") -> tuple[list, list]:
    groups, files = [], []
    for g in listing.groups:
        quant = g.quant_from_name or ""
        if g.quant_from_header and g.quant_from_header != g.quant_from_name:
            quant = f"{quant} (header: {g.quant_from_header})".strip()
        est = fit.estimate(g.shape, n_ctx, kv_type, kv_type) if g.shape else None
        cells = _verdict_cells(est, machine) if g.kind != "other" else ["", ""]
        kind = g.kind + (f" · {g.note}" if g.note else "")
        groups.append([g.label, kind, quant, fit.human_bytes(g.size), *cells])
        files += [[g.label, f.path, fit.human_bytes(f.size)] for f in g.files]
    return groups, files


def local_rows(models_dir, n_ctx: int, kv_type: str = "f16") -> tuple[list, list[str]]:
    machine = fit.detect_machine()
    rows, labels = [], []
    for m in scan(models_dir):
        est = estimate_for(m.path, n_ctx, kv_type, kv_type) if m.format != "other" and not m.problem else None
        kind = f"{m.format} ⚠️ {m.problem}" if m.problem else m.format
        rows.append([m.label, kind, m.quantization or "", fit.human_bytes(m.size_bytes),
                     *_verdict_cells(est, machine)])
        labels.append(m.label)
    return rows, labels


def progress_html(job: DownloadJob) -> str:
    p = job.progress
    if p is None:
        return "<div class='download-line'>starting…</div>"
    return (f"<progress value='{p.fraction * 100:.1f}' max='100' style='width:100%'></progress>"
            f"<div class='download-line'>{html.escape(p.line())}</div>")


def wire(hearth: Hearth, tab: DownloadTab, model_dropdown: gr.Dropdown) -> None:
    jobs: dict[str, DownloadJob | None] = {"current": None}

    def ctx(value) -> int:
        try:
            return max(int(value or 0), 0)
        except (TypeError, ValueError):
            return 4096

    def kv(value) -> str:
        return value if value in KV_CACHE_TYPES else "f16"

    def list_files(repo, revision, token, n_ctx, kv_type):
        try:
            listing = list_repo(repo, revision, token)
        except HubError as e:
            return (notice(e), [], [], gr.update(choices=[], value=[]), None)
        groups, files = listing_rows(listing, ctx(n_ctx), fit.detect_machine(), kv(kv_type))
        choices = [(f"{g.label} · {fit.human_bytes(g.size)}", g.label) for g in listing.groups]
        note = f" · {len(listing.refused)} file(s) refused: names that would leave models/" if listing.refused else ""
        gated = " · gated: a token is needed to download" if listing.gated else ""
        text = (f"**{listing.repo_id}** @ {listing.revision} ({listing.commit[:10]}): {len(listing.files)} files, "
                f"{fit.human_bytes(sum(f.size for f in listing.files))}{gated}{note}")
        return text, groups, files, gr.update(choices=choices, value=[]), listing

    def start(chosen, listing, token, n_ctx, kv_type):
        refused = admin_refusal(hearth, "download models")
        if refused is not None:
            yield notice(refused), "", gr.skip(), gr.skip(), gr.skip()
            return
        job = jobs["current"]
        if job is None or not job.running:
            if listing is None:
                yield notice("list a repo first"), "", gr.skip(), gr.skip(), gr.skip()
                return
            if not chosen:
                yield notice("tick the groups to download"), "", gr.skip(), gr.skip(), gr.skip()
                return
            try:
                names = [f.path for label in chosen for f in listing.group(label).files]
            except HubError as e:
                yield notice(e), "", gr.skip(), gr.skip(), gr.skip()
                return
            job = jobs["current"] = DownloadJob(listing.repo_id, models_dir=hearth.models_dir, names=names,
                                                token=token, listing=listing)
        while job.running:
            yield f"Downloading {job.repo_id}…", progress_html(job), gr.skip(), gr.skip(), gr.skip()
            time.sleep(POLL_SECONDS)
        rows, labels = local_rows(hearth.models_dir, ctx(n_ctx), kv(kv_type))
        choices = gr.update(choices=[c.label for c in hearth.model_choices()])
        if job.error:
            yield notice(job.error), progress_html(job), choices, rows, gr.update(choices=labels)
            return
        r = job.result
        kept = f" ({len(r.already_there)} already there)" if r.already_there else ""
        yield (f"✅ Downloaded and verified {len(r.paths)} file(s) of {r.repo_id} into `{r.folder}`{kept}; "
               "load it in the Model tab."), progress_html(job), choices, rows, gr.update(choices=labels)

    def stop():
        refused = admin_refusal(hearth, "stop downloads")
        if refused is not None:
            return notice(refused)
        job = jobs["current"]
        if job is not None and job.running:
            job.cancel()
            return "Stopping… the download resumes from here next time."
        return "No download is running."

    def refresh_local(n_ctx, kv_type):
        rows, labels = local_rows(hearth.models_dir, ctx(n_ctx), kv(kv_type))
        return rows, gr.update(choices=labels, value=None)

    def delete_local(label, n_ctx, kv_type):
        refused = admin_refusal(hearth, "delete models")
        if refused is not None:
            message = notice(refused)
        elif not label:
            message = "Choose a model to delete."
        else:
            loaded = hearth.models.current
            try:
                message = "🗑️ " + delete(hearth.models_dir, label, loaded.path if loaded else None)
            except (HubError, OSError) as e:
                message = notice(e)
        rows, labels = local_rows(hearth.models_dir, ctx(n_ctx), kv(kv_type))
        return (message, rows, gr.update(choices=labels, value=None),
                gr.update(choices=[c.label for c in hearth.model_choices()]))

    tab.list_files.click(list_files, [tab.repo, tab.revision, tab.token, tab.n_ctx, tab.kv_type],
                         [tab.status, tab.groups, tab.files, tab.choose, tab.listing], concurrency_limit=4)
    tab.repo.submit(list_files, [tab.repo, tab.revision, tab.token, tab.n_ctx, tab.kv_type],
                    [tab.status, tab.groups, tab.files, tab.choose, tab.listing], concurrency_limit=4)
    tab.download.click(start, [tab.choose, tab.listing, tab.token, tab.n_ctx, tab.kv_type],
                       [tab.status, tab.progress, model_dropdown, tab.local, tab.local_choice],
                       concurrency_limit=4)
    tab.stop.click(stop, None, [tab.status], queue=False)
    tab.refresh.click(refresh_local, [tab.n_ctx, tab.kv_type], [tab.local, tab.local_choice], queue=False)
    tab.tab.select(refresh_local, [tab.n_ctx, tab.kv_type], [tab.local, tab.local_choice], queue=False)
    tab.delete.click(delete_local, [tab.local_choice, tab.n_ctx, tab.kv_type],
                     [tab.local_status, tab.local, tab.local_choice, model_dropdown],
                     js="(label, n, kv) => [label && confirm('Delete ' + label + ' from disk?') ? label : null, n, kv]")
