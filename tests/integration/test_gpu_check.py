"""scripts/gpu_check.sh --dry-run: the GPU check's steps on the CPU (no CUDA builds),
with the tiny model it makes, the loader contract and the tokens/s comparison; every
step that can run here passes and the CUDA-only ones say they were skipped.

No carry folder is passed, so the tokenizer step runs as it would on a machine that
never ran --prepare. About 30 s of CPU (three PyTorch imports, one GGUF conversion).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

RUNS_HERE = ("environment", "sources", "tokenizer", "tiny-model", "contract-transformers", "speed-transformers",
             "gguf", "probe-llama.cpp", "contract-llama.cpp", "speed-llama.cpp")
NEEDS_CUDA = ("wheels", "build-llama.cpp", "build-exllamav2", "contract-exllamav2", "speed-exllamav2")


def test_dry_run_passes_every_step_it_can_run(tmp_path):
    work = tmp_path / "work"
    try:
        result = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--carry", str(tmp_path / "none"),
                                 "--work", str(work)], cwd=ROOT, capture_output=True, text=True, timeout=600)
        verdict = (work / "summary.txt").read_text() if (work / "summary.txt").exists() else ""
    finally:
        shutil.rmtree(work, ignore_errors=True)  # ~55 MB of tiny models; pytest keeps old tmp_paths
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    summary = output[output.index("[gpu-check] summary"):]
    rows = {m["step"]: (m["status"], m["details"]) for m in re.finditer(
        r"^(?P<step>[\w.-]+)\s+(?P<status>ok|failed|skipped)\s+[\d.]+(?:[ \t]+(?P<details>.*))?$", summary, re.M)}
    assert set(rows) == set(RUNS_HERE) | set(NEEDS_CUDA), summary
    assert {step for step, (status, _) in rows.items() if status == "ok"} == set(RUNS_HERE), summary
    assert {step for step, (status, _) in rows.items() if status == "skipped"} == set(NEEDS_CUDA), summary
    assert re.fullmatch(r"10 passed in [\d.]+s", rows["contract-transformers"][1]), summary
    assert re.fullmatch(r"10 passed in [\d.]+s", rows["contract-llama.cpp"][1]), summary
    assert rows["probe-llama.cpp"][1] == "loads everywhere it was tried", summary
    for step, backend in (("speed-transformers", "transformers-bf16"), ("speed-llama.cpp", "llama.cpp")):
        assert re.fullmatch(rf"{re.escape(backend)}: Hearth [\d.]+ tok/s, raw [\d.]+ tok/s, x[\d.]+",
                            rows[step][1]), summary
    assert "every step that ran passed" in verdict
