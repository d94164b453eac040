"""Listing and downloading through the real huggingface_hub against the Hub stand-in
(tests/hub_standin.py: the Hub itself cannot be reached here), then loading what was
downloaded with the real llama.cpp."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hub_standin import MIXED_REPO, SMOLLM_FILE, SMOLLM_REPO, hub, hub_env  # noqa: F401 (fixtures)
from tests.support import ROOT
from webui.modelfiles.downloads import DownloadJob, download, read_record
from webui.modelfiles.hub import PARTIAL_DIR, list_repo
from webui.modelfiles.local import delete, scan

FOLDER = SMOLLM_REPO.replace("/", "_")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(models: Path) -> list[Path]:
    return [p for p in models.rglob("*") if p.name.endswith(".part") or PARTIAL_DIR in p.parts and p.is_file()]


def test_listing_groups_every_file_and_reads_the_gguf_header(hub_env, default_model):
    listing = list_repo(SMOLLM_REPO)
    (gguf,) = [g for g in listing.groups if g.kind == "gguf"]
    assert gguf.label == SMOLLM_FILE and gguf.size == default_model.stat().st_size
    assert (gguf.quant_from_name, gguf.quant_from_header) == ("Q4_1", "Q4_1")
    # The header came from a range request, not a download of the 98 MB file.
    assert hub_env.ranges_requested(SMOLLM_FILE) == ["bytes=0-524287"]
    assert gguf.shape.n_layers == 30 and gguf.shape.kv_bytes_per_token == 30 * 3 * 64 * 2 * 2
    assert gguf.files[0].sha256 == sha256(default_model)

    mixed = list_repo(MIXED_REPO)
    kinds = {g.kind for g in mixed.groups}
    assert kinds == {"gguf", "safetensors", "gptq", "exl2", "other"}
    listed = [f.path for g in mixed.groups for f in g.files]
    assert sorted(listed) == sorted(f.path for f in mixed.files)  # every file, once
    top = next(g for g in mixed.groups if g.kind == "safetensors")
    assert {"model-00001-of-00002.safetensors", "config.json", "tokenizer.json"} <= {f.path for f in top.files}
    assert top.shape.n_layers == 30  # from config.json, read before download
    exl2 = next(g for g in mixed.groups if g.kind == "exl2")
    assert exl2.quant_from_name == "4.0bpw"
    misnamed = next(g for g in mixed.groups if g.label == "smollm2-135m-instruct-q8_0.gguf")
    assert (misnamed.quant_from_name, misnamed.quant_from_header) == ("Q8_0", "Q4_1")
    assert misnamed.quantization == "Q4_1"  # the header wins


def test_download_verifies_and_the_model_loads(hub_env, tmp_path, default_model, greedy):
    from webui.hearth import Hearth

    models = tmp_path / "models"
    seen = []
    result = download(SMOLLM_REPO, models_dir=models, names=[SMOLLM_FILE], on_progress=seen.append)
    path = models / FOLDER / SMOLLM_FILE
    assert result.paths == [path.resolve()]
    assert sha256(path) == sha256(default_model)
    assert leftovers(models) == []
    assert read_record(models / FOLDER)["files"][SMOLLM_FILE]["sha256"] == sha256(default_model)
    assert seen[-1].phase == "done" and seen[-1].done_bytes == path.stat().st_size
    assert any(p.phase == "verifying" for p in seen)

    # Asking again downloads nothing: the verified file is already there.
    hub_env.served.clear()
    again = download(SMOLLM_REPO, models_dir=models, names=[SMOLLM_FILE])
    assert again.already_there == [SMOLLM_FILE] and hub_env.ranges_requested(SMOLLM_FILE) == []

    (local,) = scan(models)
    assert (local.label, local.format, local.quantization) == (f"{FOLDER}/{SMOLLM_FILE}", "GGUF", "Q4_1")
    assert local.repo_id == SMOLLM_REPO

    core = Hearth(models_dir=models)
    try:
        assert local.label in [c.label for c in core.model_choices()]
        loaded = core.load_model(str(path), "llama.cpp", {"n_ctx": 512})
        assert loaded.path == path
        text, stats = core.complete("The capital of France is", greedy).result()
        assert text.strip() and stats.completion_tokens > 0
        with pytest.raises(Exception, match="unload it"):
            delete(models, local.label, loaded_path=core.models.current.path)
    finally:
        core.unload_model()
        core.engine.close()
    assert delete(models, local.label) == f"deleted {local.label}"
    assert not (models / FOLDER).exists()


def test_resume_after_the_server_drops_the_connection(hub_env, tmp_path, default_model):
    cut = 30 << 20
    fault = hub_env.fault(SMOLLM_REPO, SMOLLM_FILE)
    fault.drop_after, fault.drops_left = cut, 1
    download(SMOLLM_REPO, models_dir=tmp_path, names=[SMOLLM_FILE])
    ranges = hub_env.ranges_requested(SMOLLM_FILE)
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut  # it went on from what it had, not from the start
    assert sha256(tmp_path / FOLDER / SMOLLM_FILE) == sha256(default_model)


def test_a_download_that_keeps_failing_stops_and_resumes_next_time(hub_env, tmp_path, default_model,
                                                                    monkeypatch):
    import webui.modelfiles.downloads

    monkeypatch.setattr(webui.modelfiles.downloads, "RETRY_WAIT", 0.01)
    fault = hub_env.fault(SMOLLM_REPO, SMOLLM_FILE)
    fault.drop_after, fault.drops_left, fault.fail_requests = 10 << 20, 1, 100  # then the network is gone
    with pytest.raises(Exception) as e:
        download(SMOLLM_REPO, models_dir=tmp_path, names=[SMOLLM_FILE])
    assert "broke off at" in str(e.value) and "run it again to resume" in str(e.value)
    assert "\n" not in str(e.value)
    assert len(hub_env.ranges_requested(SMOLLM_FILE)) == 1 + 1 + webui.modelfiles.downloads.MAX_STALLED_RETRIES
    (part,) = leftovers(tmp_path)
    kept = part.stat().st_size
    assert 0 < kept <= 10 << 20 and not (tmp_path / FOLDER / SMOLLM_FILE).exists()

    hub_env.clear_faults()
    hub_env.served.clear()
    download(SMOLLM_REPO, models_dir=tmp_path, names=[SMOLLM_FILE])
    assert hub_env.ranges_requested(SMOLLM_FILE) == [f"bytes={kept}-"]
    assert sha256(tmp_path / FOLDER / SMOLLM_FILE) == sha256(default_model)


def test_a_stopped_download_resumes_next_time(hub_env, tmp_path, default_model):
    hub_env.fault(SMOLLM_REPO, SMOLLM_FILE).bytes_per_second = 40e6
    job = DownloadJob(SMOLLM_REPO, models_dir=tmp_path, names=[SMOLLM_FILE])
    deadline = time.monotonic() + 30
    while (job.progress is None or job.progress.done_bytes < 4e6) and time.monotonic() < deadline:
        time.sleep(0.02)
    job.cancel()
    assert job.finished.wait(30)
    assert job.error.startswith("stopped")
    final = tmp_path / FOLDER / SMOLLM_FILE
    assert not final.exists()  # never a half file under the final name
    (part,) = leftovers(tmp_path)
    kept = part.stat().st_size
    assert 0 < kept < default_model.stat().st_size

    hub_env.clear_faults()
    hub_env.served.clear()
    download(SMOLLM_REPO, models_dir=tmp_path, names=[SMOLLM_FILE])
    assert hub_env.ranges_requested(SMOLLM_FILE) == [f"bytes={kept}-"]
    assert sha256(final) == sha256(default_model)
    assert leftovers(tmp_path) == []


def test_cli_downloads_with_a_progress_bar(hub_env, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub_env.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    run = subprocess.run([sys.executable, "-m", "webui", "download", MIXED_REPO, "--include", "gptq-*/*",
                          "--models-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "100%" in run.stderr and "/s" in run.stderr and "ETA" in run.stderr
    assert "verified 3 file(s)" in run.stdout
    folder = tmp_path / MIXED_REPO.replace("/", "_") / "gptq-4bit-128g"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "quantize_config.json"]

    # A repo with several GGUF files is not narrowed to one silently: the user chooses.
    run = subprocess.run([sys.executable, "-m", "webui", "download", MIXED_REPO, "--models-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "holds 2 GGUF files" in run.stderr and "--include" in run.stderr
    assert "smollm2-135m-instruct-q8_0.gguf" in run.stdout  # the listing shows every file
    help_text = subprocess.run([sys.executable, "-m", "webui", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60).stdout
    assert "hearth download ORG/REPO" in help_text


def test_a_download_in_the_background_reports_speed_and_eta(hub_env, tmp_path):
    hub_env.fault(SMOLLM_REPO, SMOLLM_FILE).bytes_per_second = 60e6
    job = DownloadJob(SMOLLM_REPO, models_dir=tmp_path, names=[SMOLLM_FILE])
    seen = []
    deadline = time.monotonic() + 1.2  # long enough for a few smoothed speed readings
    while job.running and time.monotonic() < deadline:
        if job.progress is not None:
            seen.append(job.progress)
        time.sleep(0.05)
    job.cancel()
    assert job.finished.wait(30)
    moving = [p for p in seen if p.phase == "downloading" and p.speed > 0]
    assert moving, "no progress report carried a speed"
    assert all(p.eta_seconds is not None for p in moving)
    assert any(10e6 < p.speed < 200e6 for p in moving)
    assert "ETA" in moving[-1].line() and "/s" in moving[-1].line()


def test_models_view_formats_and_deleting_one_model_keeps_the_others(hub_env, tmp_path, default_model):
    models = tmp_path / "models"
    download(MIXED_REPO, models_dir=models, include=["*.safetensors", "*.json", "README.md", "*q4_1.gguf",
                                                      "gptq-4bit-128g/*", "exl2-4.0bpw/*"])
    folder = MIXED_REPO.replace("/", "_")
    found = {m.label: m for m in scan(models)}
    assert {label: (m.format, m.quantization) for label, m in found.items()} == {
        folder: ("safetensors", None),
        f"{folder}/exl2-4.0bpw": ("EXL2", "4.0bpw"),
        f"{folder}/gptq-4bit-128g": ("GPTQ", None),
        f"{folder}/smollm2-135m-instruct-q4_1.gguf": ("GGUF", "Q4_1"),
    }
    assert found[f"{folder}/smollm2-135m-instruct-q4_1.gguf"].size_bytes == default_model.stat().st_size

    delete(models, folder)  # the top-level safetensors model: its own files only
    assert not (models / folder / "model-00001-of-00002.safetensors").exists()
    assert not (models / folder / "config.json").exists()
    assert (models / folder / "smollm2-135m-instruct-q4_1.gguf").is_file()
    assert (models / folder / "gptq-4bit-128g" / "model.safetensors").is_file()
    assert "config.json" not in read_record(models / folder)["files"]  # fetched again if asked
    for label in (f"{folder}/smollm2-135m-instruct-q4_1.gguf", f"{folder}/gptq-4bit-128g"):
        delete(models, label)
        assert label not in {m.label for m in scan(models)}
    assert (models / folder).is_dir()  # the EXL2 folder is still a model
    delete(models, f"{folder}/exl2-4.0bpw")
    assert not (models / folder).exists()  # nothing left: the repo folder goes


def test_delete_never_follows_a_link_out_of_models(tmp_path, default_model):
    models = tmp_path / "models"
    models.mkdir()
    (models / "linked.gguf").symlink_to(default_model)
    (local,) = scan(models)
    assert local.format == "GGUF" and local.quantization == "Q4_1"
    delete(models, "linked.gguf")
    assert not (models / "linked.gguf").exists() and default_model.is_file()
    with pytest.raises(Exception, match="no model"):
        delete(models, "../models")
