"""GGUF LoRA files on a llama.cpp model: checked from their header against the model's
tensors before llama.cpp reads them (llama_adapter_lora_init only logs why it fails and
returns NULL), then several applied to the context at once, each with its scale.
llama_cpp is imported inside the functions that use it.
"""
from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loaders.gguf import GGUFHeader, checked_header
from loaders.lora import AdapterError, AdapterSpec, gguf_adapter_file


def check_gguf_lora(path: Path, model: GGUFHeader) -> None:
    """Refuse, with one line, a GGUF that is not a LoRA or not one for `model` (the
    loaded model's header): the architecture, each adapted tensor's presence and
    shape, as llama.cpp's llama_adapter_lora_init checks them."""
    name = path.name
    header = checked_header(path, AdapterError, name)
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
