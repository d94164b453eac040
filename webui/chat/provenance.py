"""What made a reply: the record saved with every chat reply, and the checks behind
Reproduce.

A record holds the model file (name, size, a hash prefix), the loader and its library's
version, every sampler with the seed actually used, the chat's template and mode, and
the extensions that were on. It is a plain dict inside the chat file (histories.py keeps
it only when it has this shape), so a chat stays readable JSON.

The seed: a user's seed of -1 means "a new one each time"; the chat picks the seed
before the reply is queued (`with_seed`) and records that number, so the same record
run again on the same model gives the same text.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loaders.fields import to_dict
from loaders.params import PARAM_NAMES, GenerationParams
from webui.chat.template_fallback import template_of
from webui.chat.templates import CUSTOM_TEMPLATE, MODEL_TEMPLATE
from webui.errors import ErrorKind, UserError
from webui.runtime.model_manager import LoadedModel

# The library behind each loader, whose version a record names.
LOADER_LIBRARIES = {"llama.cpp": "llama_cpp_python", "Transformers": "transformers", "GPTQ": "gptqmodel",
                    "ExLlamaV2": "exllamav2"}
HASH_WINDOW = 1 << 20  # bytes read at the start, middle and end of a file
HASH_PREFIX = 12  # hex digits kept
MAX_FOLDER_FILES = 64  # files of a weights folder that enter its hash (sorted by name)


class ReproduceError(UserError):
    """A reply cannot be made again from its record (one line)."""

    kind = ErrorKind.CONFLICT


def with_seed(params: GenerationParams) -> GenerationParams:
    """The parameters with a real seed: -1 becomes a random one picked now."""
    if params.seed >= 0:
        return params
    return dataclasses.replace(params, seed=secrets.randbits(32))


# --- the model's identity ------------------------------------------------------------
# Not a hash of the whole file: SHA-256 reads 1.2 GB/s here from the page cache (the
# built-in 98 MB model: 81 ms), so a 7 GB GGUF costs ~6 s, more from a cold disk: too
# long per reply and a waste per load. A partial hash, SHA-256 over the size and three
# 1 MiB windows (start, middle, end), took 3.3 ms on the same file, and tells
# apart what matters here: another quantization or fine-tune differs in the GGUF header
# (first window: metadata and tensor table) and in the tensor data. It is cached per
# (path, size, mtime), so a reply pays a stat().
_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def _partial_hash(path: Path, size: int, digest: Any) -> None:
    with open(path, "rb") as f:
        for start in sorted({0, max(size // 2 - HASH_WINDOW // 2, 0), max(size - HASH_WINDOW, 0)}):
            f.seek(start)
            digest.update(f.read(HASH_WINDOW))


def file_identity(path: Path | str) -> tuple[int, str]:
    """(size in bytes, hash prefix) of a model file or weights folder; (0, hash of
    the address) for a remote engine's URL."""
    if not isinstance(path, Path):
        return 0, hashlib.sha256(str(path).encode()).hexdigest()[:HASH_PREFIX]
    st = path.stat()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())[:MAX_FOLDER_FILES]
    stats = [(p, p.stat()) for p in files]
    size = sum(s.st_size for _, s in stats)
    key = (str(path), size, max([st.st_mtime_ns, *(s.st_mtime_ns for _, s in stats)]))
    with _hash_lock:
        cached = _hashes.get(key)
    if cached is None:
        digest = hashlib.sha256(str(size).encode())
        for p, s in stats:
            digest.update(str(p.relative_to(path) if p != path else "").encode() + str(s.st_size).encode())
            _partial_hash(p, s.st_size, digest)
        cached = digest.hexdigest()[:HASH_PREFIX]
        with _hash_lock:
            _hashes[key] = cached
    return size, cached


def library_version(loader: str) -> str:
    dist = LOADER_LIBRARIES.get(loader)
    if dist is None:
        return ""
    try:
        return f"{dist} {importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return dist


def model_record(loaded: LoadedModel) -> dict[str, Any]:
    """The loaded model's part of a record."""
    try:
        size, digest = file_identity(loaded.path)
    except OSError:  # moved or deleted since it was loaded: the name still says which
        size, digest = 0, ""
    return {"name": loaded.name, "size": size, "hash": digest}


def same_model(recorded: Mapping[str, Any], loaded: LoadedModel) -> bool:
    now = model_record(loaded)
    if recorded.get("hash") and now["hash"]:
        return recorded["hash"] == now["hash"] and recorded.get("size") == now["size"]
    return recorded.get("name") == now["name"]


# --- the record ----------------------------------------------------------------------
def build_record(loaded: LoadedModel | None, params: GenerationParams, *, mode: str, template: str,
                 custom_template: str, character: str, user_name: str, system_prompt: str,
                 extensions: Iterable[str]) -> dict[str, Any] | None:
    """The record of one reply, or None when no model ran it (it failed before)."""
    if loaded is None:
        return None
    used = template
    if template == MODEL_TEMPLATE:
        used = f"{MODEL_TEMPLATE} ({template_of(loaded).name})"
    record = {
        "model": model_record(loaded),
        "loader": loaded.loader,
        "library": library_version(loaded.loader),
        "params": to_dict(params),
        "template": template,
        "template_used": used,
        "mode": mode,
        "character": character,
        "user_name": user_name,
        "system_prompt": system_prompt,
        "extensions": list(extensions),
        "time": round(time.time(), 3),
    }
    if template == CUSTOM_TEMPLATE:
        record["custom_template"] = custom_template  # the user's own text: no name says what it was
    return record


def valid_record(record: Any) -> dict[str, Any] | None:
    """A saved record as this version reads it; None for anything else (left out)."""
    if not isinstance(record, dict):
        return None
    model, params = record.get("model"), record.get("params")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(params, dict):
        return None
    return record


def record_params(record: Mapping[str, Any]) -> GenerationParams:
    """The record's samplers, checked as any face's input is (unknown names left out:
    a record written by a newer Hearth)."""
    values = {k: v for k, v in record["params"].items() if k in PARAM_NAMES}
    return GenerationParams.from_mapping(values)


def record_chat(record: Mapping[str, Any]) -> dict[str, str]:
    """The chat controls the record's reply was made with (ChatOptions' fields)."""
    keys = ("mode", "character", "template", "custom_template", "user_name", "system_prompt")
    return {k: str(record[k]) for k in keys if isinstance(record.get(k), str)}


def check_reproducible(record: Mapping[str, Any] | None, loaded: LoadedModel | None) -> None:
    """Raise a one-line ReproduceError unless the loaded model is the record's."""
    if record is None:
        raise ReproduceError("this reply has no record of what made it, so it cannot be reproduced")
    model = record["model"]
    need = f"{model['name']}" + (f" ({_size(model.get('size', 0))}, {model['hash']})" if model.get("hash") else "")
    if loaded is None:
        raise ReproduceError(f"no model is loaded: load {need} to reproduce this reply")
    if not same_model(model, loaded):
        raise ReproduceError(f"this reply was made by {need}; load it to reproduce the reply "
                             f"({loaded.name} is loaded)")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def describe(record: Mapping[str, Any] | None) -> str:
    """The record as Markdown lines, for the Chat tab's reply details."""
    if not record:
        return "No record: this reply was written before Hearth kept one, or by hand."
    model = record["model"]
    params = record["params"]
    samplers = ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("grammar", "stop"))
    lines = [
        f"**Model** {model['name']} · {_size(model.get('size') or 0)} · hash {model.get('hash') or '?'}",
        f"**Loader** {record.get('loader', '?')}" + (f" · {record['library']}" if record.get("library") else ""),
        f"**Seed** {params.get('seed')} · **Template** {record.get('template_used') or record.get('template')}"
        f" · **Mode** {record.get('mode')}",
        f"**Samplers** {samplers}",
        f"**Extensions on** {', '.join(record.get('extensions') or []) or 'none'}",
    ]
    if params.get("stop"):
        lines.append(f"**Stop strings** {', '.join(repr(s) for s in params['stop'])}")
    if params.get("grammar"):
        lines.append("**Grammar** yes")
    when = record.get("time")
    if isinstance(when, (int, float)):
        lines.append(f"**Made** {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}")
    return "  \n".join(lines)


__all__ = ["ReproduceError", "build_record", "check_reproducible", "describe", "file_identity",
           "model_record", "record_chat", "record_params", "valid_record", "with_seed"]
