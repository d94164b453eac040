"""Decide whether llama.cpp may use its repacked CPU weight buffers ("extra bufts").

Seen on machines whose CPU reports AMX: a native build of llama-cpp-python 0.3.36
segfaults on the first decode inside ggml_backend_amx_mul_mat. Turning the extra
buffer types off avoids it, but costs speed where AMX works. So we never turn them
off blindly: on a CPU that reports AMX we decode once in a child process, and only
if that child dies do we load without them. The verdict is cached per CPU, llama.cpp
version and quantization, so the test runs once per machine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from loaders.native_defaults import native_defaults

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120

_PROBE_CODE = r"""
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_batch=32, verbose=False)
ids = llm.tokenize(b"The capital of France is", add_bos=True)
for i, _ in enumerate(llm.generate(ids, temp=0.0)):
    if i >= 1:
        break
print("probe-ok")
"""


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_amx(flags: set[str] | None = None) -> bool:
    return any(f.startswith("amx") for f in (cpu_flags() if flags is None else flags))


def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hearth" / "cpu-repack.json"


def _build_identity() -> str:
    """The installed llama.cpp build: its version, and the size and time of its CPU
    kernels' library, since the same version built with other flags (say, without
    the AMX kernels) can crash where the last one did not, or the reverse."""
    try:
        from importlib.metadata import version
        llama_version = version("llama-cpp-python")
    except Exception:
        return "?"
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return llama_version
    lib = Path(spec.origin).parent / "lib" / "libggml-cpu.so"
    try:
        stat = lib.stat()
    except OSError:
        return llama_version
    return f"{llama_version}|{stat.st_size}|{stat.st_mtime_ns}"


def _cache_key(quantization: str | None) -> str:
    flags = " ".join(sorted(cpu_flags()))
    return hashlib.sha256(f"{_build_identity()}|{flags}|{quantization}".encode()).hexdigest()[:16]


def probe(model_path: Path, command: list[str] | None = None) -> bool:
    """True if a decode with repacked buffers survives in a child process."""
    cmd = command or [sys.executable, "-c", _PROBE_CODE, str(model_path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    ok = done.returncode == 0 and "probe-ok" in done.stdout
    if not ok:
        log.warning("llama.cpp's repacked CPU buffers failed a test decode (exit %s); "
                    "loading without them", done.returncode)
    return ok


def decide(setting: str, model_path: Path, quantization: str | None,
           *, flags: set[str] | None = None, command: list[str] | None = None) -> bool:
    """The value for llama.cpp's use_extra_bufts."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    if not cpu_has_amx(flags):
        return True  # the known crash is AMX-only; every other CPU keeps the fast path
    cache = _cache_file()
    key = _cache_key(quantization)
    try:
        verdicts = json.loads(cache.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if key not in verdicts:
        verdicts[key] = probe(model_path, command)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(verdicts))
            tmp.replace(cache)
        except OSError:
            pass
    return bool(verdicts[key])


def model_params(**fields: Any) -> AbstractContextManager[None]:
    """Models made inside this block get these llama_model_params fields set, such as
    use_extra_bufts or progress_callback (loaders/native_defaults.py says how)."""
    return native_defaults("llama_model_default_params", **fields)

