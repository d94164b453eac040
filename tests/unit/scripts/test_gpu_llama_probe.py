"""scripts/gpu_llama_probe.py: a crashing child is told apart from a failing one, and
the first change that makes a crashing load work is the fix passed on.

The crash itself is real (a sitecustomize that dereferences NULL before the child's
code runs). The CUDA loads cannot happen here, so for the choice of the fix `run_child`
is a stand-in that crashes the ways of loading a test names."""
from __future__ import annotations

import shutil

from scripts import gpu_llama_probe as probe
from scripts.gpu_llama_probe import Outcome


def test_a_segfaulting_child_is_a_crash_with_its_signal(tmp_path, monkeypatch):
    (tmp_path / "sitecustomize.py").write_text("import ctypes\nctypes.string_at(0)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    outcome, _ = probe.run_child(probe.BASELINE, tmp_path / "model.gguf", 0, timeout=60)
    assert (outcome.status, outcome.detail) == ("crashed", "SIGSEGV")


def test_a_child_that_raises_is_a_failure_with_its_last_line(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("raise SystemExit('no such model here')\n")
    outcome, _ = probe.run_child(probe.Change("x", "y", env={"PYTHONPATH": str(tmp_path)}),
                                 tmp_path / "model.gguf", 0, timeout=60)
    assert outcome.status == "failed" and outcome.detail.endswith("no such model here")


def stand_in(crashing: set[str], tried: list[str]):
    def run_child(change, model, gpu_layers, timeout, gdb=None):
        tried.append(change.name + (" (gdb)" if gdb else ""))
        status = "crashed" if change.name in crashing else "ok"
        return Outcome(change.name, change.why, status, "SIGSEGV" if status == "crashed" else "", 0.1), ""
    return run_child


def test_a_crashing_baseline_is_retried_change_by_change(monkeypatch, tmp_path):
    tried: list[str] = []
    monkeypatch.setattr(probe, "run_child", stand_in({"baseline", "no-extra-bufts"}, tried))
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no gdb, no ldd
    result = probe.probe(tmp_path / "model.gguf", -1, budget=100)
    assert result["fix"] == {"name": "no-mmap", "env": {}, "hearth_options": {"use_mmap": False}}
    assert result["verdict"].startswith("fix: no-mmap")
    assert tried == ["baseline", "no-extra-bufts", "no-mmap", "no-pinned", "cpu-only", "hearth-loader+no-mmap"]


def test_a_crash_only_in_hearths_loader_is_retried_with_its_options(monkeypatch, tmp_path):
    tried: list[str] = []
    monkeypatch.setattr(probe, "run_child", stand_in({"hearth-loader"}, tried))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = probe.probe(tmp_path / "model.gguf", -1, budget=100)
    assert result["fix"]["hearth_options"] == {"cpu_repack": "off"}
    assert tried == ["baseline", "torch-first", "hearth-loader", "hearth-loader+no-extra-bufts",
                     "hearth-loader+no-mmap"]


def test_gdb_gets_the_backtrace_where_it_exists(monkeypatch, tmp_path):
    tried: list[str] = []
    monkeypatch.setattr(probe, "run_child", stand_in({"baseline", "baseline-gdb"} | {c.name for c in probe.FIXES}, tried))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/gdb" if name == "gdb" else None)
    result = probe.probe(tmp_path / "model.gguf", -1, budget=100)
    assert tried[:2] == ["baseline", "baseline-gdb (gdb)"]
    assert result["fix"] is None and result["verdict"].startswith("no change tried")
