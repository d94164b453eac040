"""PEFT LoRA adapter folders on a Transformers model: checked against the model's
layers from adapter_config.json and the safetensors header before PEFT reads them, then
several applied at once, each with its scale. peft is imported inside the functions
that use it.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from loaders.hf_common import SafetensorsError, missing_library, one_line, read_json, read_safetensors_header
from loaders.lora import (
    PEFT_CONFIG,
    PEFT_PICKLE,
    PEFT_WEIGHTS,
    AdapterError,
    AdapterSpec,
    peft_adapter_folder,
)

# PEFT saves a LoraModel's tensors under this prefix (base_model.model.<module>.lora_A.weight).
_PEFT_PREFIX = "base_model.model."


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
        if (folder / PEFT_PICKLE).is_file():
            raise AdapterError(f"{name} has only {PEFT_PICKLE}, a pickle file, which can run code when loaded; "
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
