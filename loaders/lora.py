"""LoRA adapters, what every loader that takes them shares: the `lora` option, an
entry (`PATH` or `PATH:SCALE`), its bounds, and which kind of adapter a path holds
(a GGUF LoRA file for llama.cpp, a PEFT folder for Transformers), so each loader can
name the other for the other kind.

Applying them: `lora_llamacpp.py` (llama.cpp contexts) and `lora_peft.py` (PEFT).
Pure Python; nothing here imports a backend.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from loaders.base import LoadError
from loaders.errors import ErrorKind
from loaders.fields import setting
from loaders.gguf import GGUF_MAGIC

# A LoRA is trained to be applied at scale 1; 0 switches it off and a negative scale
# subtracts it. Past a few times its trained strength a model's output is noise, so
# the bound catches typos (10 for 1.0) rather than limiting real use.
MIN_SCALE, MAX_SCALE = -4.0, 4.0
# Each adapter costs a matrix product per adapted layer and token; llama-server and
# PEFT set no limit, but a list longer than this is a mistake, not a mix.
MAX_ADAPTERS = 8
MAX_ENTRY_CHARS = 4096  # a path, as the draft_model option bounds it

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PICKLE = "adapter_model.bin"

GGUF_LORA_HELP = ("LoRA adapters to apply, GGUF LoRA files (llama.cpp's convert_lora_to_gguf.py makes them from "
                  "PEFT folders), each PATH or PATH:SCALE (scale from -4 to 4; 1 = as trained), a path or a name "
                  "in models/. In the Model tab: quoted and comma-separated, like \"style.gguf\", \"tone.gguf:0.5\"; "
                  "Apply LoRA changes them on the loaded model without reloading it.")
PEFT_LORA_HELP = ("LoRA adapters to apply, PEFT adapter folders (adapter_config.json + adapter_model.safetensors), "
                  "each PATH or PATH:SCALE (scale from -4 to 4; 1 = as trained), a path or a name in models/. In "
                  "the Model tab: quoted and comma-separated, like \"style\", \"tone:0.5\"; Apply LoRA changes "
                  "them on the loaded model without reloading it.")


def lora_setting(help: str) -> Any:
    """The `lora` option, declared the same way on every loader that takes adapters."""
    return setting((), help, nargs="+", metavar="PATH[:SCALE]", group="LoRA adapters")


class AdapterError(LoadError):
    """An adapter that cannot be applied to this model (one line); the model and the
    adapters it had stay as they were."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class AdapterSpec:
    path: Path
    scale: float = 1.0

    @property
    def entry(self) -> str:
        """As the `lora` option holds it."""
        return f"{self.path}:{self.scale!r}"


def takes_adapters(options: Any) -> bool:
    """Whether the loader whose Options `options` is applies LoRA adapters."""
    return any(f.name == "lora" for f in fields(options))


def parse_entry(entry: str) -> AdapterSpec:
    """`PATH` or `PATH:SCALE` (a Windows drive's colon is part of the path: only a
    number after the last colon is a scale)."""
    entry = entry.strip()
    if not entry:
        raise AdapterError("a LoRA entry is empty: give PATH or PATH:SCALE")
    if len(entry) > MAX_ENTRY_CHARS:
        raise AdapterError(f"a LoRA entry is {len(entry):,} characters long; a path has at most {MAX_ENTRY_CHARS:,}")
    path, sep, tail = entry.rpartition(":")
    scale = 1.0
    if sep and path:
        try:
            scale = float(tail)
        except ValueError:
            path = entry  # no number after the colon: it is part of the path
        else:
            if not math.isfinite(scale) or not MIN_SCALE <= scale <= MAX_SCALE:
                raise AdapterError(f"the LoRA scale of {Path(path).name} must be from {MIN_SCALE:g} to "
                                   f"{MAX_SCALE:g} (1 = as trained, 0 = off; got {tail.strip()})")
    else:
        path = entry
    return AdapterSpec(Path(path).expanduser(), scale)


def parse_entries(entries: Sequence[str]) -> tuple[AdapterSpec, ...]:
    if len(entries) > MAX_ADAPTERS:
        raise AdapterError(f"{len(entries)} LoRA adapters at once; at most {MAX_ADAPTERS}")
    specs = tuple(parse_entry(e) for e in entries)
    seen: set[Path] = set()
    for s in specs:
        if s.path in seen:
            raise AdapterError(f"{s.path.name} is named twice; give each adapter once, with the scale you want")
        seen.add(s.path)
    return specs


# --- which kind of adapter a path holds ----------------------------------------------


def _is_gguf(path: Path) -> bool:
    # Not a regular file (a pipe, a device): never opened, since reading a pipe blocks.
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _peft_folder(path: Path) -> Path | None:
    """The PEFT adapter folder `path` is, or whose config or weights file it is."""
    if path.is_dir():
        return path if (path / PEFT_CONFIG).is_file() else None
    if path.name in (PEFT_CONFIG, PEFT_WEIGHTS, PEFT_PICKLE) and (path.parent / PEFT_CONFIG).is_file():
        return path.parent
    return None


def _not_an_adapter(path: Path, wanted: str) -> AdapterError:
    # The same line whether or not the path exists and whatever it holds: a request
    # may name any path on this machine, and the answer must not tell which exist.
    return AdapterError(f"{path.name or path}: no such file or folder, or not {wanted}")


_GGUF_WANTED = "a GGUF LoRA file (the llama.cpp loader applies those)"
_PEFT_WANTED = f"a PEFT adapter folder ({PEFT_CONFIG} + {PEFT_WEIGHTS})"


def gguf_adapter_file(path: Path) -> Path:
    """`path`, if it is a GGUF file; a PEFT folder gets a line that says how to convert it."""
    if _is_gguf(path):
        return path
    if _peft_folder(path) is not None:
        raise AdapterError(f"{path.name} is a PEFT adapter folder, which the Transformers loader applies; "
                           f"llama.cpp takes GGUF LoRA files: convert it with llama.cpp's convert_lora_to_gguf.py "
                           f"--base <the original Hugging Face model folder>")
    raise _not_an_adapter(path, _GGUF_WANTED)


def peft_adapter_folder(path: Path) -> Path:
    """The PEFT adapter folder at `path`; a GGUF LoRA gets a line that names its loader."""
    folder = _peft_folder(path)
    if folder is not None:
        return folder
    if _is_gguf(path):
        raise AdapterError(f"{path.name} is a GGUF file, which the llama.cpp loader applies as a LoRA; "
                           f"Transformers takes PEFT adapter folders ({PEFT_CONFIG} + {PEFT_WEIGHTS})")
    raise _not_an_adapter(path, _PEFT_WANTED)
