"""LoRA adapters: GGUF LoRA files on llama.cpp, PEFT adapter folders on Transformers,
several at once with a scale each, applied and removed on the loaded model.

A user names an adapter as `PATH` or `PATH:SCALE` (the `lora` option every loader
that takes adapters declares, and the runtime call that changes them). Before a
library reads a file, it is checked here against the loaded model, in pure Python, so
a LoRA for another base model or architecture is one line that says so; the library's
own failure (llama.cpp logs why and returns NULL) would say nothing. A change that
fails leaves the adapters that were applied. torch, peft and llama_cpp are imported
inside the functions that use them.
"""
from __future__ import annotations

import ctypes
import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from loaders.base import LoadError
from loaders.errors import ErrorKind
from loaders.fields import setting
from loaders.gguf import GGUF_MAGIC, GGUFError, GGUFHeader, check_complete
from loaders.hf_common import SafetensorsError, missing_library, one_line, read_json, read_safetensors_header

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
_PEFT_PICKLE = "adapter_model.bin"
# PEFT saves a LoraModel's tensors under this prefix (base_model.model.<module>.lora_A.weight).
_PEFT_PREFIX = "base_model.model."

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
    if path.name in (PEFT_CONFIG, PEFT_WEIGHTS, _PEFT_PICKLE) and (path.parent / PEFT_CONFIG).is_file():
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


# --- GGUF LoRA files against a llama.cpp model ----------------------------------------


def check_gguf_lora(path: Path, model: GGUFHeader) -> None:
    """Refuse, with one line, a GGUF that is not a LoRA or not one for `model` (the
    loaded model's header): the architecture, each adapted tensor's presence and
    shape, as llama.cpp's llama_adapter_lora_init checks them."""
    name = path.name
    try:
        header = check_complete(path)
    except GGUFError as e:
        raise AdapterError(f"{name}: {e}") from None
    except OSError as e:
        raise AdapterError(f"{name} cannot be read ({e.strerror or type(e).__name__})") from None
    kind, adapter_type = header.get("general.type"), header.get("adapter.type")
    if kind != "adapter" or adapter_type != "lora":
        what = f"a {adapter_type} adapter" if kind == "adapter" else "a model"
        raise AdapterError(f"{name} is {what}, not a LoRA adapter (its general.type is {kind!r}, adapter.type "
                           f"{adapter_type!r})")
    if header.architecture != model.architecture:
        raise AdapterError(f"{name} is a LoRA for the {header.architecture} architecture; the loaded model is "
                           f"{model.architecture}")
    base = {t.name: t.shape for t in model.tensors}
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for t in header.tensors:
        stem, dot, part = t.name.rpartition(".")
        if dot and part in ("lora_a", "lora_b"):
            pairs.setdefault(stem, {})[part] = t.shape
        elif not t.name.endswith("_norm.weight"):  # llama.cpp skips norm vectors
            raise AdapterError(f"{name} holds {t.name[:80]!r}, which is not a LoRA tensor")
    if not pairs:
        raise AdapterError(f"{name} holds no LoRA tensors")
    for stem, ab in sorted(pairs.items()):
        a, b = ab.get("lora_a"), ab.get("lora_b")
        if a is None or b is None or len(a) < 2 or len(b) < 2:
            raise AdapterError(f"{name} is incomplete: {stem[:80]} lacks its lora_a or lora_b matrix")
        target = base.get(stem)
        if target is None:
            raise AdapterError(f"{name} is a LoRA for another base model: this model has no tensor {stem[:80]}")
        if stem.endswith("token_embd.weight"):  # stored flipped; see llm_build_inp_embd
            fits = target[0] == b[1] and target[1] == a[1]
            wants = (b[1], a[1])
        else:
            fits = target[0] == a[0] and target[1] == b[1] and a[1] == b[0]
            wants = (a[0], b[1])
        if not fits:
            raise AdapterError(f"{name} is a LoRA for another base model: {stem} is {_dims(target)} here, the "
                               f"adapter is for {_dims(wants)}")


def check_gguf_adapters(specs: Sequence[AdapterSpec], model: GGUFHeader) -> None:
    """Each of `specs` is a GGUF LoRA for the model whose header is `model`."""
    for s in specs:
        check_gguf_lora(gguf_adapter_file(s.path), model)


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape[:2])


class LlamaCppAdapters:
    """The LoRA adapters of one llama.cpp model and its context.

    llama.cpp loads an adapter's tensors once (llama_adapter_lora_init) and applies any
    set of loaded adapters, each with a scale, to the context in one call
    (llama_set_adapters_lora); the model's weights are never touched, so removing one is
    exact. An adapter is freed once the context no longer lists it."""

    def __init__(self, llm, model_header: GGUFHeader):
        import llama_cpp

        self._llm = llm
        self._header = model_header
        self._loaded: dict[Path, Any] = {}  # path -> llama_adapter_lora pointer
        self.applied: tuple[AdapterSpec, ...] = ()
        cache = llm.cache
        # The disk prompt cache's folder for the plain model; adapter sets get their own.
        self._cache_dir = (Path(cache.cache.directory) if isinstance(cache, llama_cpp.LlamaDiskCache) else None)

    def check(self, specs: Sequence[AdapterSpec]) -> None:
        """Everything that can be checked before llama.cpp reads a byte."""
        check_gguf_adapters([s for s in specs if s.path not in self._loaded], self._header)

    def apply(self, specs: Sequence[AdapterSpec]) -> bool:
        """Apply exactly `specs`; True if that changed what the context computes. A
        change also drops the KV cache's contents (and the prompt cache's): KV
        computed under other adapters must not be reused for a prompt."""
        import llama_cpp

        specs = tuple(specs)
        if specs == self.applied:
            return False
        self.check(specs)
        added: list[Path] = []
        try:
            for s in specs:
                if s.path in self._loaded:
                    continue
                adapter = llama_cpp.llama_adapter_lora_init(self._llm._model.model, str(s.path).encode())
                if not adapter:
                    raise AdapterError(f"llama.cpp could not load the LoRA {s.path.name} (it passed Hearth's checks "
                                       f"of its header; the file may be corrupt)")
                self._loaded[s.path] = adapter
                added.append(s.path)
            self._set_on_context(specs)
        except BaseException:
            for path in added:
                llama_cpp.llama_adapter_lora_free(self._loaded.pop(path))
            raise
        for path in [p for p in self._loaded if all(s.path != p for s in specs)]:
            llama_cpp.llama_adapter_lora_free(self._loaded.pop(path))
        self.applied = specs
        self._llm.reset()  # the next prompt is evaluated from its first token
        if self._llm.cache is not None:
            self._llm.set_cache(prompt_cache_for(self._llm.cache, specs, self._cache_dir))
        return True

    def _set_on_context(self, specs: Sequence[AdapterSpec]) -> None:
        import llama_cpp

        n = len(specs)
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*(self._loaded[s.path] for s in specs)) if n else None
        scales = (ctypes.c_float * n)(*(s.scale for s in specs)) if n else None
        if llama_cpp.llama_set_adapters_lora(self._llm._ctx.ctx, adapters, n, scales):
            raise AdapterError("llama.cpp refused to set the LoRA adapters on the context")

    def close(self) -> None:
        """Take every adapter off the context and free it (before the model is freed)."""
        import llama_cpp

        if self._loaded:
            self._set_on_context(())
            for adapter in self._loaded.values():
                llama_cpp.llama_adapter_lora_free(adapter)
            self._loaded.clear()
        self.applied = ()


def prompt_cache_for(cache, specs: Sequence[AdapterSpec], base_dir: Path | None):
    """A prompt cache (llama-cpp-python's RAM or disk cache) that holds no KV state
    computed under other adapters: a fresh RAM cache, or a disk cache in a folder of
    its own per adapter set (the folder of the plain model, `base_dir`, without any)."""
    import llama_cpp

    if isinstance(cache, llama_cpp.LlamaRAMCache):
        return llama_cpp.LlamaRAMCache(capacity_bytes=cache.capacity_bytes)
    if isinstance(cache, llama_cpp.LlamaDiskCache) and base_dir is not None:
        folder = base_dir
        if specs:
            digest = hashlib.sha256()
            for s in specs:
                stat = s.path.stat()
                digest.update(f"{s.path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{s.scale!r}\n".encode())
            folder = base_dir.with_name(f"{base_dir.name}-lora-{digest.hexdigest()[:16]}")
        return llama_cpp.LlamaDiskCache(cache_dir=str(folder), capacity_bytes=cache.capacity_bytes)
    return cache


# --- PEFT adapter folders against a Transformers model --------------------------------


def check_peft_lora(folder: Path, model) -> None:
    """Refuse, with one line, a PEFT folder that is not a LoRA or not one for `model`
    (the loaded torch module): each adapted layer must exist and have the adapter's
    input and output sizes. Reads adapter_config.json and the safetensors header only."""
    name = folder.name
    config = read_json(folder / PEFT_CONFIG)
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise AdapterError(f"{name} is a {peft_type or 'untyped'} PEFT adapter; Hearth applies LoRA adapters only")
    weights = folder / PEFT_WEIGHTS
    if not weights.is_file():
        if (folder / _PEFT_PICKLE).is_file():
            raise AdapterError(f"{name} has only {_PEFT_PICKLE}, a pickle file, which can run code when loaded; "
                               f"Hearth loads {PEFT_WEIGHTS} only")
        raise AdapterError(f"{name} has {PEFT_CONFIG} but no {PEFT_WEIGHTS}")
    try:
        header = read_safetensors_header(weights)
    except SafetensorsError as e:
        raise AdapterError(f"{name}: {e}") from None
    made_for = config.get("base_model_name_or_path")
    made_for = f" (made for {Path(made_for).name})" if isinstance(made_for, str) and made_for else ""
    modules = dict(model.named_modules())
    found = 0
    for key, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        stem, sep, part = key.removeprefix(_PEFT_PREFIX).partition(".lora_")
        if not sep or not isinstance(shape, list) or len(shape) != 2:
            continue
        found += 1
        layer = modules.get(stem)
        if layer is None:
            raise AdapterError(f"{name} is a LoRA for another base model{made_for}: this model has no layer "
                               f"{stem[:80]}")
        size_in, size_out = getattr(layer, "in_features", None), getattr(layer, "out_features", None)
        if part.startswith("A.") and size_in is not None and shape[1] != size_in:
            raise AdapterError(f"{name} is a LoRA for another base model{made_for}: {stem} takes {size_in} inputs "
                               f"here, the adapter {shape[1]}")
        if part.startswith("B.") and size_out is not None and shape[0] != size_out:
            raise AdapterError(f"{name} is a LoRA for another base model{made_for}: {stem} gives {size_out} outputs "
                               f"here, the adapter {shape[0]}")
    if not found:
        raise AdapterError(f"{name} holds no LoRA weights")


class PeftAdapters:
    """The LoRA adapters of one Transformers model, through PEFT.

    Each adapter is loaded once under a name of its own (PEFT keeps them side by side
    in every adapted layer); the active set is switched with set_adapter and each
    layer's scaling set per adapter, so several apply at once with a scale each. The
    base weights are never merged, so removing the last adapter (PEFT's unload, which
    takes the LoRA layers out again) gives back the base model exactly."""

    def __init__(self, base):
        self._base = base
        self._peft = None  # the PeftModel while any adapter is loaded
        self._names: dict[Path, str] = {}  # path -> PEFT adapter name
        self._numbers = itertools.count()
        self.applied: tuple[AdapterSpec, ...] = ()

    @property
    def model(self):
        """What generates: the PeftModel while adapters are applied, else the base model."""
        return self._peft if self._peft is not None else self._base

    def check(self, specs: Sequence[AdapterSpec]) -> None:
        for s in specs:
            if s.path not in self._names:
                check_peft_lora(peft_adapter_folder(s.path), self._base)

    def apply(self, specs: Sequence[AdapterSpec]) -> bool:
        specs = tuple(specs)
        if specs == self.applied:
            return False
        self.check(specs)
        try:
            from peft import PeftModel
            from peft.tuners.lora import LoraLayer
        except ImportError:
            raise missing_library("PEFT", "transformers") from None
        added = []
        for s in specs:
            if s.path in self._names:
                continue
            name = f"lora{next(self._numbers)}"
            folder = str(peft_adapter_folder(s.path))
            try:
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(self._base, folder, adapter_name=name, is_trainable=False)
                else:
                    self._peft.load_adapter(folder, adapter_name=name, is_trainable=False)
            except Exception as e:  # PEFT raises many kinds; the user needs one line
                self._forget(added)
                raise AdapterError(f"PEFT could not load {s.path.name}: {one_line(e)}") from None
            self._names[s.path] = name
            added.append(s.path)
        self._forget([p for p in self._names if all(s.path != p for s in specs)])
        if self._peft is not None:
            active = [self._names[s.path] for s in specs]
            self._peft.base_model.set_adapter(active, inference_mode=True)
            for module in self._peft.modules():
                if isinstance(module, LoraLayer):
                    for s in specs:
                        module.set_scale(self._names[s.path], s.scale)
        self.applied = specs
        return True

    def _forget(self, paths: Sequence[Path]) -> None:
        """Delete these adapters; with none left, take PEFT's layers out again."""
        for path in paths:
            name = self._names.pop(path)
            if self._names:
                self._peft.delete_adapter(name)
        if not self._names and self._peft is not None:
            self._base = self._peft.unload()
            self._peft = None

    def close(self) -> None:
        self._peft = None
        self._base = None
        self._names.clear()
        self.applied = ()
