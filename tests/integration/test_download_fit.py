"""The will-it-fit estimate against the RAM that loading the SmolLM2 GGUF really takes
(RSS growth), measured in a fresh process so that no other loaded model skews it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT
from webui.modelfiles.local import estimate_for

MEASURE = """
import json, sys
import psutil
import llama_cpp  # the library's own import is not the model's memory
from webui.hearth import Hearth

hearth = Hearth(models_dir=sys.argv[3])
proc = psutil.Process()
before = proc.memory_info().rss
hearth.load_model(sys.argv[1], "llama.cpp", {"n_ctx": int(sys.argv[2])})
after_load = proc.memory_info().rss
print(json.dumps({"load": after_load - before}))
"""


@pytest.mark.parametrize("n_ctx", [2048, 8192])
def test_estimate_within_25_percent_of_real_rss_growth(default_model, tmp_path, n_ctx):
    run = subprocess.run([sys.executable, "-c", MEASURE, str(default_model), str(n_ctx), str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])["load"]
    estimated = estimate_for(default_model, n_ctx).total_bytes
    ratio = estimated / measured
    print(f"n_ctx={n_ctx}: estimated {estimated / 2**20:.1f} MiB, measured {measured / 2**20:.1f} MiB, "
          f"ratio {ratio:.2f}")
    assert 0.75 <= ratio <= 1.25
