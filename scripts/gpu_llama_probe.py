"""Why does llama.cpp's CUDA build crash at load? Each way of loading the model runs in
a child process of its own, so a segmentation fault ends only that child, and the
result is a table: which ways load and decode one token, which crash (and with what
signal), and the first change that makes a crashing load work, for
scripts/gpu_check.py to apply to its llama.cpp contract and speed steps.

The first run on a lent H200 (docs/GPU.md) segfaulted inside
`llama_model_load_from_file` with `n_gpu_layers=-1` and `verbose=False`, which hid
llama.cpp's own log. So here:

1. "baseline": a raw `llama_cpp.Llama(n_gpu_layers=..., verbose=True)`, as the speed
   script's raw side; its llama.cpp log shows how far the load got.
2. If it crashes: the same under `gdb -batch -ex run -ex bt` where gdb exists (the
   native backtrace), else its faulthandler dump, then one change at a time, the most
   likely first: no extra (repacked CPU) buffer types, no mmap, no pinned host
   memory, and CPU only (does the CUDA build load at all).
3. If it loads: the contexts the check's steps add, one at a time: PyTorch's CUDA
   libraries loaded first (as the contract and speed scripts do), and Hearth's own
   llama.cpp loader; a crash there is retried with the same changes.

Besides: which CUDA libraries the build's libraries resolve to (`ldd`), since a
missing or second libcuda/libcudart is a classic cause.

    python scripts/gpu_llama_probe.py MODEL.gguf [--gpu-layers -1] [--budget 150] [--json OUT] [--baseline-only]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 60  # s; a load of the tiny model takes 2-5 s, CUDA's start included
GDB_TIMEOUT = 90
LOG_LINES = 25  # lines of a crashed child's output printed


@dataclass(frozen=True)
class Change:
    """One way of loading, as the differences from the baseline."""

    name: str
    why: str
    env: dict[str, str] = field(default_factory=dict)
    llama: dict = field(default_factory=dict)  # llama_cpp.Llama arguments
    model_params: dict = field(default_factory=dict)  # llama_model_params fields (loaders.cpu_repack.model_params)
    hearth: dict | None = None  # load through Hearth's llama.cpp loader, with these options
    torch_first: bool = False


# The most likely first: an H200's host CPU reports AMX, where llama.cpp's repacked CPU
# buffers have crashed before (loaders/cpu_repack.py); mmap'd weights copied to the GPU
# and pinned host buffers are the load's other host-side paths.
FIXES = (
    Change("no-extra-bufts", "llama.cpp's repacked CPU buffer types off (use_extra_bufts=false)",
           model_params={"use_extra_bufts": False}),
    Change("no-mmap", "weights read into memory instead of mmap'd (use_mmap=false)", llama={"use_mmap": False}),
    Change("no-pinned", "no pinned host buffers (GGML_CUDA_NO_PINNED=1)", env={"GGML_CUDA_NO_PINNED": "1"}),
    Change("cpu-only", "no layer offloaded (n_gpu_layers=0): does the CUDA build load at all", llama={"n_gpu_layers": 0}),
)
BASELINE = Change("baseline", "raw llama_cpp.Llama, every layer offloaded, llama.cpp's log on")
CONTEXTS = (
    Change("torch-first", "PyTorch's CUDA libraries loaded first, as in the contract and speed steps", torch_first=True),
    Change("hearth-loader", "Hearth's llama.cpp loader (model-parameter patching, progress callback)", hearth={},
           torch_first=True),
)
# What a fix means for Hearth's loader options (the contract and speed steps).
HEARTH_OPTIONS = {"no-extra-bufts": {"cpu_repack": "off"}, "no-mmap": {"use_mmap": False}}

_CHILD = r"""
import faulthandler, json, sys
faulthandler.enable()
spec = json.loads(sys.argv[1])
if spec["torch_first"]:
    import torch
    if torch.cuda.is_available():
        torch.cuda.init()
        torch.zeros(1, device="cuda")
if spec["hearth"] is not None:
    sys.path.insert(0, spec["root"])
    import loaders
    from loaders.params import GenerationParams
    import threading
    loader = loaders.get("llama.cpp")
    options = loader.Options(**{"n_ctx": 256, "n_gpu_layers": spec["gpu_layers"], **spec["hearth"]})
    model = loader.load(spec["model"], options)
    ids = model.encode("The capital of France is")
    for _ in model.generate(ids, GenerationParams(temperature=0.0, max_new_tokens=1), threading.Event()):
        pass
    model.unload()
else:
    import llama_cpp
    if spec["model_params"]:
        sys.path.insert(0, spec["root"])
        from loaders.cpu_repack import model_params
    else:
        import contextlib
        model_params = contextlib.nullcontext
    with model_params(**spec["model_params"]):
        llm = llama_cpp.Llama(spec["model"], **{"n_ctx": 256, "n_gpu_layers": spec["gpu_layers"], "verbose": True,
                                                **spec["llama"]})
    ids = llm.tokenize(b"The capital of France is", add_bos=True)
    for token in llm.generate(ids, temp=0.0):
        break
    llm.close()
print("probe-load-ok", flush=True)
"""


@dataclass
class Outcome:
    name: str
    why: str
    status: str  # ok / crashed / failed / timed out
    detail: str  # the signal, or the last line of the error
    seconds: float


def run_child(change: Change, model: Path, gpu_layers: int, timeout: float, gdb: str | None = None
              ) -> tuple[Outcome, str]:
    spec = {"model": str(model), "gpu_layers": gpu_layers, "llama": change.llama, "model_params": change.model_params,
            "hearth": change.hearth, "torch_first": change.torch_first, "root": str(ROOT)}
    argv = [sys.executable, "-c", _CHILD, json.dumps(spec)]
    if gdb:
        argv = [gdb, "-q", "-batch", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", "run",
                "-ex", "bt 40", "-ex", "info sharedlibrary", "--args", *argv]
    env = {**os.environ, **change.env}
    start = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
                              start_new_session=True)
    except subprocess.TimeoutExpired as e:
        out = _text(e.stdout) + _text(e.stderr)
        return Outcome(change.name, change.why, "timed out", f"after {timeout:.0f} s", time.monotonic() - start), out
    seconds = time.monotonic() - start
    out = done.stdout + done.stderr
    if "probe-load-ok" in done.stdout:
        return Outcome(change.name, change.why, "ok", "loaded and decoded a token", seconds), out
    if done.returncode < 0:
        try:
            sig = signal.Signals(-done.returncode).name
        except ValueError:
            sig = f"signal {-done.returncode}"
        return Outcome(change.name, change.why, "crashed", sig, seconds), out
    if gdb and "received signal" in out:
        line = next(ln for ln in out.splitlines() if "received signal" in ln)
        return Outcome(change.name, change.why, "crashed", line.strip()[:160], seconds), out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return Outcome(change.name, change.why, "failed", f"exit {done.returncode}: {lines[-1][:160] if lines else ''}",
                   seconds), out


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def tail(text: str, n: int = LOG_LINES) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines()[-n:])


def gdb_report(text: str) -> str:
    """The backtrace and the CUDA / ggml libraries from gdb's output."""
    keep = []
    for line in text.splitlines():
        if line.startswith("#") or "received signal" in line or (
                "0x" in line and any(k in line for k in ("cuda", "cublas", "ggml", "llama", "nvidia"))):
            keep.append(line)
    return "\n".join(f"    | {line}" for line in keep[:80]) or tail(text)


def linked_libraries() -> str:
    """`ldd` of the build's libraries: what libcuda, libcudart and cuBLAS resolve to."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return "llama_cpp is not importable"
    lib = Path(spec.origin).parent / "lib"
    if not shutil.which("ldd"):
        return f"{lib}: ldd not found"
    lines = [f"libraries in {lib}:"]
    for so in sorted(lib.glob("lib*.so")):
        out = subprocess.run(["ldd", str(so)], capture_output=True, text=True).stdout
        wanted = [ln.strip().split(" (0x")[0] for ln in out.splitlines()
                  if "not found" in ln or any(k in ln for k in ("cuda", "cublas", "nvidia"))]
        lines.append(f"  {so.name}: " + ("; ".join(wanted) if wanted else "no CUDA libraries"))
    return "\n".join(lines)


def probe(model: Path, gpu_layers: int, budget: float, contexts: bool = True) -> dict:
    deadline = time.monotonic() + budget
    print(linked_libraries(), flush=True)

    def left() -> float:
        return deadline - time.monotonic()

    def attempt(change: Change, gdb: str | None = None) -> Outcome:
        limit = min(GDB_TIMEOUT if gdb else CHILD_TIMEOUT, max(left(), 1))
        outcome, out = run_child(change, model, gpu_layers, limit, gdb)
        label = f"{change.name}{' under gdb' if gdb else ''}"
        print(f"[llama-probe] {label}: {outcome.status} ({outcome.seconds:.1f} s) {outcome.detail} "
              f"-- {change.why}", flush=True)
        if outcome.status != "ok":
            print(gdb_report(out) if gdb else tail(out), flush=True)
        return outcome

    outcomes = [attempt(BASELINE)]
    fix = None
    if outcomes[0].status == "ok":
        retry_base = None
        for context in CONTEXTS if contexts else ():
            if left() < 15:
                break
            outcome = attempt(context)
            outcomes.append(outcome)
            if outcome.status != "ok":
                retry_base = context
                break
        if retry_base is not None:
            for change in FIXES[:2]:  # the two that Hearth's loader options can apply
                if left() < 15:
                    break
                combined = Change(f"{retry_base.name}+{change.name}", change.why, env=change.env,
                                  hearth={**(retry_base.hearth or {}), **HEARTH_OPTIONS[change.name]}
                                  if retry_base.hearth is not None else None,
                                  llama=change.llama, model_params=change.model_params,
                                  torch_first=retry_base.torch_first)
                outcome = attempt(combined)
                outcomes.append(outcome)
                if outcome.status == "ok" and fix is None:
                    fix = change
    else:
        gdb = shutil.which("gdb")
        if gdb and left() > 30:
            outcomes.append(attempt(Change("baseline-gdb", BASELINE.why), gdb=gdb))
        elif not gdb:
            print("[llama-probe] gdb not found: the faulthandler dump above is the Python side only", flush=True)
        for change in FIXES:
            if left() < 15:
                print(f"[llama-probe] no time left for {change.name}", flush=True)
                break
            outcome = attempt(change)
            outcomes.append(outcome)
            if outcome.status == "ok" and fix is None and change.name != "cpu-only":
                fix = change
        if fix is not None and left() > 15:  # the contract loads through Hearth's loader: check it there too
            outcomes.append(attempt(Change(f"hearth-loader+{fix.name}", fix.why, env=fix.env,
                                           hearth=HEARTH_OPTIONS.get(fix.name, {}), torch_first=True)))
    crashed = any(o.status != "ok" for o in outcomes)
    if not crashed:
        verdict = "loads everywhere it was tried"
    elif fix is not None:
        verdict = f"fix: {fix.name} ({fix.why})"
    else:
        verdict = "no change tried made the crashing load work; see the log above"
    print(f"[llama-probe] {verdict}", flush=True)
    for o in outcomes:
        print(f"[llama-probe]   {o.name:<28} {o.status:<9} {o.seconds:5.1f} s  {o.detail}", flush=True)
    return {"verdict": verdict, "fix": None if fix is None else {
        "name": fix.name, "env": fix.env, "hearth_options": HEARTH_OPTIONS.get(fix.name, {})},
        "outcomes": [asdict(o) for o in outcomes]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--gpu-layers", type=int, default=-1)
    parser.add_argument("--budget", type=float, default=150)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline-only", action="store_true",
                        help="when the baseline loads, skip the other contexts (the dry run, for time)")
    args = parser.parse_args(argv)
    result = probe(args.model, args.gpu_layers, args.budget, contexts=not args.baseline_only)
    if args.json:
        args.json.write_text(json.dumps(result))
    # Exit 0 when the loads the check needs work as they are or with a fix; 1 otherwise.
    baseline_ok = all(o["status"] == "ok" for o in result["outcomes"])
    return 0 if baseline_ok or result["fix"] is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
