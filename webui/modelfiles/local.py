"""What is on disk in models/: each model's format, quantization, size and memory
estimate, and deleting one.

A downloaded repo is a folder, models/ORG_REPO/, that may hold several GGUF
quantizations and Transformers-style weight folders; each is a model of its own here,
labelled "ORG_REPO/FILE.gguf" or "ORG_REPO[/SUBFOLDER]".
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from loaders.base import LoadError
from loaders.formats import CheckpointFormat, classify
from loaders.gguf import GGUFError, read_file_header
from loaders.hf_common import folder_format, read_json
from webui.errors import UserError
from webui.modelfiles.downloads import read_record, write_record
from webui.modelfiles.fit import (
    Estimate,
    ModelShape,
    ShapeError,
    detect_machine,
    estimate,
    shape_from_config,
    shape_from_gguf,
    summary,
    verdict,
)
from webui.modelfiles.hub import PARTIAL_DIR, RECORD_FILE, HubError, quant_from_name

_SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_SKIPPED_DIRS = {PARTIAL_DIR, ".cache", ".git"}


@dataclass(frozen=True)
class LocalModel:
    label: str
    path: Path                 # the .gguf file (the first part of a split one) or the folder
    format: str                # a CheckpointFormat's label (GGUF, safetensors, GPTQ, ...) or "other"
    quantization: str | None
    size_bytes: int
    repo_id: str | None = None  # when Hearth downloaded it
    problem: str = ""          # one line, when its header or config could not be read


def _is_later_split_part(name: str) -> bool:
    m = _SPLIT_PART.search(name)
    return bool(m) and m.group(1) != "00001"


def _split_parts(path: Path) -> list[Path]:
    m = _SPLIT_PART.search(path.name)
    if not m:
        return [path]
    stem = path.name[:m.start()]
    return sorted(path.parent.glob(f"{stem}-*-of-{m.group(2)}.gguf"))


def _weight_dirs(root: Path) -> list[Path]:
    """Folders under root (root included) holding safetensors or a config.json with weights."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        if any(n.endswith(".safetensors") for n in filenames):
            out.append(Path(dirpath))
    return out


def model_entries(models_dir: Path) -> list[tuple[str, Path]]:
    """(label, path) of every model in models/, cheaply (names only): for the Model tab."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    for entry in sorted(models_dir.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith(".md"):
            continue
        try:
            if not entry.is_dir():
                if not _is_later_split_part(entry.name):
                    out.append((entry.name, entry))
                continue
            ggufs = [p for p in sorted(entry.rglob("*.gguf"))
                     if not _SKIPPED_DIRS & set(p.relative_to(entry).parts) and not _is_later_split_part(p.name)]
            found = [(f"{entry.name}/{p.relative_to(entry).as_posix()}", p) for p in ggufs]
            for d in _weight_dirs(entry):
                rel = d.relative_to(entry).as_posix()
                found.append((entry.name if rel == "." else f"{entry.name}/{rel}", d))
        except OSError:  # an unreadable folder is listed as itself; the others still are
            found = []
        out.extend(sorted(found) or [(entry.name, entry)])
    return out


def _label(fmt: CheckpointFormat | None) -> str:
    return fmt.label if fmt is not None else "other"


def _read_config(path: Path) -> dict:
    """A folder's config.json, read as the loaders read it (bounded in size and
    nesting), or {} when it cannot be: the list shows what it can."""
    try:
        return read_json(path)
    except LoadError:
        return {}


def _size(path: Path) -> int:
    if path.is_file():
        return sum(p.stat().st_size for p in _split_parts(path))
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and PARTIAL_DIR not in p.parts)


def scan(models_dir: Path) -> list[LocalModel]:
    records: dict[str, dict] = {}
    out = []
    for label, path in model_entries(models_dir):
        top = label.split("/", 1)[0]
        if top not in records:
            records[top] = read_record(Path(models_dir) / top)
        repo_id = records[top].get("repo_id")
        repo_id = repo_id if isinstance(repo_id, str) else None
        # One unreadable model is listed with its problem; it never hides the others.
        try:
            problem = ""
            if path.is_dir():
                fmt = folder_format(path)
                quant = quant_from_name(path.name) if path.name != top else quant_from_name(repo_id or top)
            else:
                fmt = classify([path.name])
                quant, problem = _gguf_quant(path) if fmt is CheckpointFormat.GGUF else (None, "")
            out.append(LocalModel(label, path, _label(fmt), quant, _size(path), repo_id, problem))
        except (UserError, OSError, ValueError, RecursionError) as e:
            out.append(LocalModel(label, path, "other", None, 0, repo_id, f"unreadable: {e}"))
    return out


def _gguf_quant(path: Path) -> tuple[str | None, str]:
    """The quantization, and the problem reading the header ("" when none)."""
    _, quant, problem = _gguf_info(str(path), path.stat().st_mtime_ns)
    return quant, problem


@lru_cache(maxsize=256)
def _gguf_info(path: str, mtime_ns: int) -> tuple[ModelShape | None, str | None, str]:
    """Header-derived shape, quantization and the problem reading them, cached while
    the file is unchanged."""
    p = Path(path)
    try:
        header = read_file_header(p)
        return shape_from_gguf(header, _size(p)), header.quantization or quant_from_name(p.name), ""
    except (GGUFError, ShapeError, OSError) as e:
        return None, quant_from_name(p.name), str(e)


def shape_of(path: Path) -> ModelShape | None:
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _gguf_info(str(path), path.stat().st_mtime_ns)[0]
    if path.is_dir():
        config = _read_config(path / "config.json")
        if config:
            weights = sum(p.stat().st_size for p in path.glob("*.safetensors"))
            try:
                return shape_from_config(config, weights)
            except ShapeError:
                return None  # an implausible config.json: no estimate rather than a wrong one
    return None


def estimate_for(path: Path, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> Estimate | None:
    shape = shape_of(path)
    return estimate(shape, n_ctx, type_k, type_v) if shape else None


def delete(models_dir: Path, label: str, loaded_path: Path | None = None) -> str:
    """Delete one model: a GGUF file with its split parts, or a weights folder's own
    files (not the GGUF files or model folders beside or under it). The repo folder goes
    too once no model is left in it. Only ever inside models/, never through a link."""
    models_dir = Path(models_dir)
    found = dict(model_entries(models_dir))
    if label not in found:
        raise HubError(f"no model {label!r} in {models_dir}")
    path = found[label]
    root = os.path.abspath(models_dir)
    if os.path.commonpath([root, os.path.abspath(path)]) != root or os.path.abspath(path) == root:
        raise HubError(f"refusing to delete {path}: it is not inside {models_dir}")
    if path.is_symlink():
        doomed = [path]
    elif path.is_file():
        doomed = _split_parts(path)
    else:
        doomed = [p for p in sorted(path.iterdir()) if (p.is_file() or p.is_symlink())
                  and p.suffix.lower() != ".gguf" and p.name != RECORD_FILE]
    if loaded_path is not None:
        loaded = os.path.abspath(loaded_path)
        if loaded == os.path.abspath(path) or loaded in {os.path.abspath(p) for p in doomed}:
            raise HubError(f"{label} is loaded: unload it in the Model tab first")
    for p in doomed:
        p.unlink()
    top = models_dir / label.split("/", 1)[0]
    if top.is_dir() and not top.is_symlink():
        _forget(top, doomed)
        if path.is_dir() and path != top and not any(path.iterdir()):
            path.rmdir()
        if not _has_models(top):
            shutil.rmtree(top)
    _gguf_info.cache_clear()
    return f"deleted {label}"


def _has_models(folder: Path) -> bool:
    ggufs = (p for p in folder.rglob("*.gguf") if not _SKIPPED_DIRS & set(p.relative_to(folder).parts))
    return any(True for _ in ggufs) or bool(_weight_dirs(folder))


def _forget(top: Path, removed: list[Path]) -> None:
    """Drop the removed files from the download record, so they are fetched again if asked."""
    record = read_record(top)
    gone = {p.relative_to(top).as_posix() for p in removed}
    kept = {k: v for k, v in record["files"].items() if k not in gone}
    if kept != record["files"]:
        record["files"] = kept
        write_record(top, record)


def fit_proposal(path, n_ctx: int, machine=None, type_k: str = "f16",
                 type_v: str = "f16") -> tuple[str, int | None]:
    """The Model tab's will-it-fit line for a model, and the n_gpu_layers to propose
    (None where there is no GPU: the user's value stays)."""
    if not isinstance(path, Path) or not path.exists():
        return "", None
    est = estimate_for(path, n_ctx, type_k, type_v)
    if est is None:
        return "", None
    machine = machine or detect_machine()
    layers = verdict(est, machine).gpu_layers if machine.gpus else None
    return f"**Will it fit?** {summary(est, machine)}", layers
