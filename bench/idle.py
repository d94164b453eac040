"""What a server costs while nobody uses it: CPU-seconds per 30 s with the model loaded,
no browser open and no request, for Hearth, for Hearth with Gradio's and uvicorn's
polling put back (the cost before webui/ui/quiet_queue.py and webui/app/quiet_server.py),
and for llama.cpp's llama-server on the same model, measured over the same window, so a
shared machine's noise falls on every side alike.

    .venv/bin/python bench/idle.py [--seconds 30] [--rounds 3]

Each round starts all three servers, lets them settle, reads each process's run time
(exact, all threads: /proc/PID/task/*/schedstat) across the same `--seconds` window,
and stops them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import start  # noqa: E402
from tests.support import free_port, llama_server_binary, run_time_by_thread, stop_process  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

SETTLE_S = 5.0  # start-up's last work (imports finishing, first collections) is not idle cost
POLLING_FLAG = "--with-gradio-polling"


def serve_with_polling(argv: list[str]) -> int:
    """Run Hearth with Gradio's own queue and uvicorn's 0.1 s tick: what it was before."""
    import uvicorn

    from webui.app import cli, server
    from webui.ui import quiet_queue

    quiet_queue.quiet_gradio_queue = lambda blocks: False
    server.quiet_uvicorn_server = uvicorn.Server
    return cli.main(argv)


def sides(scratch: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (command, the path that answers once it is ready)."""
    model = str(default_model_path())
    hearth_args = ["--user-data", str(scratch / "user_data"), "--models-dir", str(scratch / "models")]
    out = {}
    for name, cmd in (("hearth", [sys.executable, "-m", "webui"]),
                      ("hearth-polling", [sys.executable, __file__, POLLING_FLAG])):
        port = free_port()
        out[name] = ([*cmd, "--port", str(port), *hearth_args], f"http://127.0.0.1:{port}", "/healthz")
    port = free_port()
    out["llama-server"] = ([str(llama_server_binary()), "--model", model, "--host", "127.0.0.1", "--port", str(port),
                            "--threads", "2"], f"http://127.0.0.1:{port}", "/health")
    return out


def cpu_seconds(pid: int) -> float:
    return sum(run_time_by_thread(pid).values()) / 1e9


def one_round(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hearth-bench-idle-") as scratch:
        procs = {}
        try:
            for name, (cmd, url, ready) in sides(Path(scratch)).items():
                procs[name] = start(cmd, url, Path(scratch) / f"{name}.log", ready_path=ready)
            time.sleep(SETTLE_S)
            before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            time.sleep(seconds)  # the measurement window: nobody calls any server
            return {name: (cpu_seconds(p.pid) - before[name]) * 30 / seconds for name, p in procs.items()}
        finally:
            for p in procs.values():
                stop_process(p)


def main() -> None:
    if sys.argv[1:2] == [POLLING_FLAG]:
        raise SystemExit(serve_with_polling(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [one_round(args.seconds) for _ in range(args.rounds)]
    print(f"idle CPU-seconds per 30 s, {args.rounds} rounds of {args.seconds:g} s (median, then each round)")
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        print(f"  {name:15s} {statistics.median(values):7.3f}   " + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
