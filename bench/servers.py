"""Starting the servers a benchmark compares, each a real subprocess: Hearth, llama.cpp's
llama-server, llama-cpp-python's server. A bench script puts the repository on sys.path
and imports `start` from here."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
# How long a server may take to load its model and answer: the limit bench/api.py and
# bench/concurrency.py each had, room for a 2-core machine other work is using.
START_TIMEOUT_S = 120


def start(cmd: list[str], url: str, log: Path, ready_path: str = "/v1/models",
          timeout: float = START_TIMEOUT_S) -> subprocess.Popen:
    """Run `cmd` from the repository root with its output in `log`; return once
    `url + ready_path` answers. A server that exits or does not answer in time ends the
    benchmark (SystemExit with its log's tail)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    name = cmd[cmd.index("-m") + 1] if "-m" in cmd else Path(cmd[0]).name
    try:
        wait_until_answering(proc, url + ready_path, log, name, timeout)
    except RuntimeError as failed:
        proc.kill()
        raise SystemExit(str(failed)) from None
    return proc
