"""The built distribution works on its own: an sdist built from the checkout, a wheel
built from that sdist, installed into an empty folder and run from elsewhere finds
its shipped characters, presets and extensions inside the installed package, answers
--help, and serves. The venv's Python supplies the dependencies; the wheel is put
first on PYTHONPATH, so nothing is read from the checkout (the test checks where
every path it is given points)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

from tests.support import ROOT, free_port, stop_process

# Folders of the repository that are the developer's, never Hearth's.
NOT_SHIPPED = ("tests/", "bench/", "models/", "user_data/", "test-artifacts/")
SHIPPED = {
    "characters": ["Ember.yaml", "Ember.png", "Sage.yaml"],
    "presets": ["balanced.yaml", "creative.yaml", "deterministic.yaml", "min-p.yaml"],
    "extensions": ["documents/script.py", "example/script.py", "stats/script.py"],
    "tools": ["calculator.py", "date_time.py"],
}

PROBE = """
import json, sys, tempfile
from pathlib import Path
import webui
from webui.characters.store import CharacterStore
from webui.extensions.loading import find_extensions, import_script
from webui.extensions.manager import SHIPPED_EXTENSIONS
from webui.userdata.folders import SHIPPED_CHARACTERS, SHIPPED_PRESETS, SHIPPED_TOOLS
from webui.userdata.presets import PresetStore

empty = Path(tempfile.mkdtemp())
extensions = dict(find_extensions([SHIPPED_EXTENSIONS]))
example = import_script("example", extensions["example"])
json.dump({
    "webui": webui.__file__,
    "characters": str(SHIPPED_CHARACTERS), "presets": str(SHIPPED_PRESETS),
    "extensions": str(SHIPPED_EXTENSIONS), "example": example.__file__,
    "tools": str(SHIPPED_TOOLS), "tool_files": sorted(p.name for p in SHIPPED_TOOLS.glob("*.py")),
    "character_names": CharacterStore(SHIPPED_CHARACTERS, empty / "c").names(),
    "preset_names": PresetStore(SHIPPED_PRESETS, empty / "p").names(),
    "extension_names": sorted(extensions),
}, sys.stdout)
"""


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{args[:4]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def top_level_entries(names: list[str]) -> set[str]:
    return {name.split("/", 1)[1] for name in names if "/" in name}


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    # The sdist first, then the wheel from it, as `python -m build` does: a wheel built
    # in the checkout would pick up whatever an older build left in build/.
    run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
        cwd=ROOT)
    (sdist,) = dist.glob("hearth-*.tar.gz")
    with tarfile.open(sdist) as tar:
        in_sdist = top_level_entries(tar.getnames())
    assert not [n for n in in_sdist if n.startswith(NOT_SHIPPED)]
    for folder, files in SHIPPED.items():
        assert {f"{folder}/{f}" for f in files} <= in_sdist

    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(dist), str(sdist)])
    (wheel,) = dist.glob("hearth-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in in_wheel if n.startswith(NOT_SHIPPED)]
    for folder, files in SHIPPED.items():
        assert {f"webui/shipped/{folder}/{f}" for f in files} <= in_wheel
    assert not [n for n in in_wheel if n.endswith(".pyc")]

    target = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("HEARTH_USER_DATA", None)

    help_text = run([sys.executable, "-m", "webui", "--help"], cwd=elsewhere, env=env).stdout
    assert "--no-model" in help_text

    found = json.loads(run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env).stdout)
    package = target / "webui"
    assert Path(found["webui"]).is_relative_to(package)
    for key in ("characters", "presets", "extensions", "example", "tools"):
        assert Path(found[key]).is_relative_to(package / "shipped"), (key, found[key])
    assert "Ember" in found["character_names"]
    assert {"balanced", "creative", "deterministic", "min-p"} <= set(found["preset_names"])
    assert found["extension_names"] == ["documents", "example", "stats"]
    assert found["tool_files"] == ["calculator.py", "date_time.py"]

    port = free_port()
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "webui", "--no-model", "--port", str(port),
         "--user-data", str(tmp_path / "user_data"), "--models-dir", str(tmp_path / "models")],
        cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            assert server.poll() is None, f"the server exited:\n{(tmp_path / 'server.log').read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.3)
        assert health["status"] == "ok" and health["model"] is None
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
            models = json.load(r)
        assert models["object"] == "list"
    finally:
        stop_process(server)
        log.close()
