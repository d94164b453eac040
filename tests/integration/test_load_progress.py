"""Real loads report how far they have got: llama.cpp per tensor, Transformers per
weight, through the model manager to whoever watches; `hearth`'s start-up load draws
the bar on stderr even while llama-cpp-python silences descriptor 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llama_cpp.llama_cpp as native

from tests import model_factory
from tests.support import ROOT
from webui.runtime.load_progress import LOADED, STARTING, LoadReport
from webui.runtime.model_manager import ModelManager


def watched_load(manager: ModelManager, path: Path, loader: str, options: dict) -> list[LoadReport]:
    told: list[LoadReport] = []

    def watch(report: LoadReport) -> None:
        assert manager.loading is not None  # what a polling face (the API) would read
        told.append(report)

    manager.load(path, loader, options, progress=watch)
    assert manager.loading is None
    return told


def check_sequence(told: list[LoadReport], backend_steps: int) -> None:
    fractions = [r.fraction for r in told]
    assert fractions == sorted(fractions), fractions
    assert told[0].phase == STARTING and told[0].fraction == 0.0
    assert told[-1].phase == LOADED and told[-1].fraction == 1.0 and told[-1].done
    between = [r for r in told if r.phase == "reading weights" and 0 < r.fraction < 1]
    assert len(between) >= backend_steps, fractions
    assert all(r.seconds_left is not None and r.seconds_left >= 0 for r in between)
    elapsed = [r.elapsed for r in told]
    assert elapsed == sorted(elapsed)


def test_a_llama_cpp_load_reports_rising_fractions_ending_at_one(default_model):
    manager = ModelManager()
    default_params = native.llama_model_default_params
    try:
        # use_mmap off: llama.cpp reads every tensor; mapped, it calls back just as often (273 times)
        check_sequence(watched_load(manager, default_model, "llama.cpp", {"n_ctx": 256, "use_mmap": False}), 20)
    finally:
        manager.unload()
    assert native.llama_model_default_params is default_params  # the override ended with the load


def test_a_transformers_load_reports_its_weights():
    manager = ModelManager()
    try:
        check_sequence(watched_load(manager, model_factory.ensure_fp32(), "Transformers",
                                    {"dtype": "float32", "device": "cpu"}), 20)
    finally:
        manager.unload()


# What `hearth` runs before it serves, in a process of its own so that stderr is a real
# descriptor 2 (pytest's capture would write around llama-cpp-python's silencing).
START_UP = """
import sys
from webui.app.flags import build_parser, settings_from_args
from webui.app.server import create_hearth, load_initial_model
args = build_parser().parse_args(sys.argv[1:])
settings = settings_from_args(args)
load_initial_model(create_hearth(settings), settings, args)
"""


def test_hearth_draws_the_load_bar_on_stderr(tmp_path):
    done = subprocess.run([sys.executable, "-c", START_UP, "--n-ctx", "256", "--no-use-mmap",
                           "--models-dir", str(tmp_path / "models"), "--user-data", str(tmp_path / "user_data")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("hearth: loading")]
    # not a terminal: whole lines at 0%, each quarter reached, and when loaded
    assert len(lines) >= 4 and "\r" not in done.stderr, done.stderr[-2000:]
    assert "  0% starting" in lines[0]
    assert any("reading weights, about" in line and "s left" in line for line in lines), lines
    assert "100% loaded, took" in lines[-1]
    assert "hearth: loaded SmolLM2" in done.stdout
