"""What the Hugging-Face-folder loaders (Transformers, GPTQ, ExLlamaV2) share, in pure
Python: reading a model folder (config.json, tokenizer_config.json, safetensors headers)
without importing torch, telling which format it holds (by loaders.formats' one rule),
and refusing the wrong loader with a message that names the right one.

Detection reads only small JSON headers, so the Model tab can call it on every pick.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from loaders.base import LoadError
from loaders.errors import ErrorKind, UserError
from loaders.formats import PICKLE_SUFFIXES, CheckpointFormat, classify, is_pickle_weights
from loaders.gguf import GGUF_MAGIC
from loaders.registry import opener_of

# A safetensors header is JSON describing the tensors; real ones are at most a few MB.
_MAX_HEADER = 100 << 20
# config.json and tokenizer_config.json: real ones are KBs (a tokenizer_config with
# thousands of added tokens, a few MB); a larger one is not a model's.
_MAX_JSON_FILE = 16 << 20

# Shared by every loader that can run a model's own code (the Model tab shows it).
TRUST_REMOTE_CODE_HELP = (
    "Run Python code that comes with the model (auto_map in its config.json) to build it. "
    "That code runs with all of your user's rights, like any program you download: turn "
    "this on only for a model from a source you trust. Off, such a model is refused.")


class SafetensorsError(UserError, ValueError):
    """A .safetensors file that is not one (one line)."""

    kind = ErrorKind.INVALID


def model_folder(path: str | Path) -> Path | None:
    """The Hugging Face model folder `path` is or lies in (a folder with config.json),
    so a user may pick the folder, its config.json or one of its weight files."""
    p = Path(path)
    if p.is_dir():
        return p if (p / "config.json").is_file() else None
    if p.is_file() and (p.parent / "config.json").is_file() and p.suffix in (".json", ".safetensors", *PICKLE_SUFFIXES):
        return p.parent
    return None


def read_json(path: Path) -> dict[str, Any]:
    """A model folder's JSON file as a dict; anything else is one LoadError line."""
    where = f"{path.parent.name}/{path.name}"
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_JSON_FILE + 1)
    except OSError as e:
        raise LoadError(f"{where} cannot be read ({e.strerror or type(e).__name__})") from None
    if len(raw) > _MAX_JSON_FILE:
        raise LoadError(f"{where} is larger than {_MAX_JSON_FILE >> 20} MiB, which no model's is")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LoadError(f"{where} cannot be read as JSON: it is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise LoadError(f"{where} cannot be read as JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:  # json's decoder recurses once per nested array or object
        raise LoadError(f"{where} cannot be read as JSON: it nests too deeply") from None
    if not isinstance(data, dict):
        raise LoadError(f"{where} is not a JSON object")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    return read_json(folder / "config.json")


def weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) directly in `folder`."""
    entries = sorted(p for p in folder.iterdir() if p.is_file())
    safetensors = [p for p in entries if p.suffix == ".safetensors"]
    pickles = [p for p in entries if is_pickle_weights(p.name)]
    return safetensors, pickles


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file, checked against the file's size, so a
    truncated download or a corrupt file is named before a library trips over it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path.name} is {size} bytes, too short to be a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER):
            raise SafetensorsError(f"{path.name} has a corrupt safetensors header "
                                   f"(it declares {length} header bytes; the file has {size})")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SafetensorsError(f"{path.name} has a corrupt safetensors header (not valid JSON)") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name} has a corrupt safetensors header (not a JSON object)")
    data_size = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise SafetensorsError(f"{path.name} has a corrupt safetensors header (bad entry for {name})")
        if offsets[1] > data_size:
            raise SafetensorsError(f"{path.name} is truncated: tensor {name} ends at byte {offsets[1]} "
                                   f"of a {data_size}-byte data section (re-download it)")
    return header


def check_safetensors(files: list[Path]) -> None:
    for f in files:
        try:
            read_safetensors_header(f)
        except SafetensorsError as e:
            raise LoadError(str(e)) from None


def _tensor_names(folder: Path, names: list[str]) -> list[str]:
    """The tensor names of the folder's first safetensors file (EXL2's give it away)."""
    first = next((n for n in names if n.endswith(".safetensors")), None)
    if first is None:
        return []
    try:
        return list(read_safetensors_header(folder / first))
    except (OSError, SafetensorsError):
        return []


def _classify_folder(folder: Path, config: dict[str, Any] | None) -> CheckpointFormat | None:
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    return classify(names, config, tensor_names=_tensor_names(folder, names), name=folder.name)


def folder_format(folder: Path) -> CheckpointFormat | None:
    """The format of the checkpoint directly in `folder`, which may lack config.json
    (the local model list shows such folders too)."""
    try:
        config = read_config(folder) if (folder / "config.json").is_file() else None
    except LoadError:
        config = None
    try:
        return _classify_folder(folder, config)
    except OSError:
        return None


def model_format(path: str | Path) -> CheckpointFormat | None:
    """What `path` holds, for a loader: a GGUF file, or a model folder with a readable
    config.json (or a file in one); None otherwise."""
    p = Path(path)
    try:
        if p.is_file():
            with open(p, "rb") as f:
                if f.read(4) == GGUF_MAGIC:
                    return CheckpointFormat.GGUF
        folder = model_folder(p)
        return _classify_folder(folder, read_config(folder)) if folder is not None else None
    except (OSError, LoadError):
        return None


def wrong_format(name: str, found: CheckpointFormat, wanted: CheckpointFormat) -> str:
    """Why the chosen loader refuses `name`, naming the loader that opens it."""
    right = opener_of(found)
    if right is None:
        return f"{name} is {found.description}, which no Hearth loader opens"
    return f"{name} is {found.description}, not {wanted.description}: choose the {right} loader"


def require_format(path: str | Path, loader: str, formats: tuple[CheckpointFormat, ...]) -> Path:
    """The model folder at `path`, if it holds one of `formats` (the first is what the
    loader is for); otherwise a LoadError that says what it is and which loader to
    choose instead."""
    p = Path(path)
    found = model_format(p)
    if found in formats:
        return model_folder(p)
    if found is not None:
        raise LoadError(wrong_format(p.name, found, formats[0]))
    folder = model_folder(p)
    if folder is None:
        # The same line whether or not `p` exists: a load request may name any path,
        # and the answer must not tell which exist.
        raise LoadError(f"{p.name or p}: no such file or folder, or not a Hugging Face model folder "
                        f"(no config.json beside the weights); the {loader} loader opens a folder with "
                        f"config.json and .safetensors weights")
    read_config(folder)  # an unreadable config.json says so itself
    raise LoadError(f"{p.name} has config.json but no weight files (.safetensors)")


def read_chat_template(folder: Path) -> str | None:
    """The chat template Transformers would use: chat_template.jinja (how Transformers 5
    saves it), else the "chat_template" of tokenizer_config.json (a string, or a list of
    named templates of which "default" is the one for chat)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg_path = folder / "tokenizer_config.json"
    if not cfg_path.is_file():
        return None
    template = read_json(cfg_path).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) and template else None


def context_length(config: dict[str, Any], fallback: int = 2048) -> int:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = text.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return fallback


def resolve_device(torch, wanted: str) -> str:
    """'auto'/'cpu'/'cuda' as a torch device name; `torch` is passed in so that this
    module stays importable without it."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise LoadError("device=cuda, but PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                        "choose cpu or auto")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def check_remote_code(folder: Path, config: dict, trust_remote_code: bool) -> None:
    """Refuse a model that only its own code can build while remote code is off.
    (A known model type with a stray auto_map loads with Transformers' own class.)"""
    if trust_remote_code or "auto_map" not in config:
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise LoadError(
            f"{folder.name} needs its own Python code to run (auto_map in config.json; model type "
            f"{model_type!r} is not built into Transformers) and trust_remote_code is off: turn it on "
            f"only if you trust the model's source")


def missing_library(library: str, extra: str) -> LoadError:
    return LoadError(f"{library} is not installed: pip install 'hearth[{extra}]' "
                     f"(or pip install -e '.[{extra}]' in a checkout)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def one_line(e: BaseException) -> str:
    """A library's exception as one line a user can read."""
    return _first_line(e)
