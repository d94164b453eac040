"""What the Hugging-Face-folder loaders (Transformers, GPTQ, ExLlamaV2) share, in pure
Python: reading a model folder (config.json, tokenizer_config.json, safetensors headers)
without importing torch, telling which format it holds, and refusing the wrong loader
with a message that names the right one.

Detection reads only small JSON headers, so the Model tab can call it on every pick.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from loaders.base import LoadError
from loaders.errors import ErrorKind, UserError
from loaders.gguf import GGUF_MAGIC

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# format -> the loader that opens it (the names the registry knows them by)
FORMAT_LOADERS = {
    "gguf": "llama.cpp",
    "exl2": "ExLlamaV2",
    "gptq": "GPTQ",
    "transformers": "Transformers",
}
FORMAT_NAMES = {
    "gguf": "a GGUF file",
    "exl2": "an EXL2 (ExLlamaV2) checkpoint",
    "gptq": "a GPTQ checkpoint",
    "transformers": "an unquantized Transformers checkpoint",
}

# A safetensors header is JSON describing the tensors; real ones are at most a few MB.
_MAX_HEADER = 100 << 20
# Tensor names that only EXL2 writes (GPTQ's are qweight/qzeros/scales/g_idx).
_EXL2_TENSOR_SUFFIXES = (".q_invperm", ".q_scale_max", ".q_weight", ".q_groups")

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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoadError(f"{path.parent.name}/{path.name} cannot be read as JSON: {_first_line(e)}") from None
    if not isinstance(data, dict):
        raise LoadError(f"{path.parent.name}/{path.name} is not a JSON object")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    return read_json(folder / "config.json")


def weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) directly in `folder`."""
    entries = sorted(p for p in folder.iterdir() if p.is_file())
    safetensors = [p for p in entries if p.suffix == ".safetensors"]
    pickles = [p for p in entries if p.suffix in PICKLE_SUFFIXES and not p.name.startswith("training_args")]
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
    except (UnicodeDecodeError, json.JSONDecodeError):
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


def quantization_config(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """config.json's quantization_config, else an AutoGPTQ-style quantize_config.json."""
    q = config.get("quantization_config")
    if isinstance(q, dict):
        return q
    legacy = folder / "quantize_config.json"
    if legacy.is_file():
        q = read_json(legacy)
        q.setdefault("quant_method", "gptq")
        return q
    return None


def _has_exl2_tensors(safetensors: list[Path]) -> bool:
    if not safetensors:
        return False
    try:
        header = read_safetensors_header(safetensors[0])
    except (OSError, SafetensorsError):
        return False
    return any(name.endswith(_EXL2_TENSOR_SUFFIXES) for name in header)


def folder_format(folder: Path) -> str | None:
    """'exl2', 'gptq' or 'transformers' for a model folder, None if it has no weights."""
    try:
        config = read_config(folder)
    except LoadError:
        return None
    q = quantization_config(folder, config) or {}
    method = str(q.get("quant_method", "")).lower()
    safetensors, pickles = weight_files(folder)
    if method == "exl2" or _has_exl2_tensors(safetensors):
        return "exl2"
    if method == "gptq":
        return "gptq"
    if safetensors or pickles:
        return "transformers"
    return None


def model_format(path: str | Path) -> str | None:
    """What `path` holds: 'gguf', 'exl2', 'gptq', 'transformers', or None."""
    p = Path(path)
    try:
        if p.is_file():
            with open(p, "rb") as f:
                if f.read(4) == GGUF_MAGIC:
                    return "gguf"
        folder = model_folder(p)
        return folder_format(folder) if folder is not None else None
    except OSError:
        return None


def require_format(path: str | Path, wanted: str) -> Path:
    """The model folder at `path`, if it holds format `wanted`; otherwise a LoadError
    that says what it is and which loader to choose instead."""
    p = Path(path)
    loader = FORMAT_LOADERS[wanted]
    if not p.exists():
        raise LoadError(f"no such file or folder: {p}")
    found = model_format(p)
    if found == wanted:
        return model_folder(p)
    if found is not None:
        raise LoadError(f"{p.name} is {FORMAT_NAMES[found]}, not {FORMAT_NAMES[wanted]}: "
                        f"choose the {FORMAT_LOADERS[found]} loader")
    if model_folder(p) is None:
        raise LoadError(f"{p.name} is not a Hugging Face model folder (no config.json beside the weights); "
                        f"the {loader} loader opens a folder with config.json and .safetensors weights")
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
