"""What kind of checkpoint a model folder (or a GGUF file) holds, told from the names of
its files and its config.json, so that one rule serves the loaders (which loader opens
a folder, and the message when the wrong one is chosen), the local model list and the
Hub listing (where nothing is downloaded: only names, and config.json once it is read).

Evidence, strongest first:
1. config.json's quantization_config ("quant_method": gptq, exl2 or awq);
2. tensor names only EXL2 writes, where a safetensors header was read (conversions
   without that config entry still have them);
3. files a quantizer writes beside the weights: AutoGPTQ's quantize_config.json,
   ExLlamaV2's measurement.json, AutoAWQ's quant_config.json;
4. only while config.json is not known: the folder's or repo's name ("...-GPTQ",
   "4.0bpw", "awq"), a guess the Hub listing makes before it reads any file;
5. the weight files themselves: .safetensors, pickle-only .bin/.pt, or .gguf.

Pure: names and dictionaries in, no disk, no network.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Tensor names that only EXL2 writes (GPTQ's are qweight/qzeros/scales/g_idx).
EXL2_TENSOR_SUFFIXES = (".q_invperm", ".q_scale_max", ".q_weight", ".q_groups")

_BPW = re.compile(r"\d(\.\d+)?bpw")


class CheckpointFormat(enum.Enum):
    """A checkpoint format, with the words each screen uses for it."""

    # kind (the Hub listing's and the code's word), label (the local model list),
    # description (for messages: "X is <description>, not ...")
    GGUF = ("gguf", "GGUF", "a GGUF file")
    SAFETENSORS = ("safetensors", "safetensors", "an unquantized Transformers checkpoint")
    GPTQ = ("gptq", "GPTQ", "a GPTQ checkpoint")
    EXL2 = ("exl2", "EXL2", "an EXL2 (ExLlamaV2) checkpoint")
    AWQ = ("awq", "AWQ", "an AWQ checkpoint")
    PICKLE = ("pickle", "pickle", "a checkpoint with only pickle weights (.bin/.pt)")

    def __init__(self, kind: str, label: str, description: str):
        self.kind = kind
        self.label = label
        self.description = description

    @classmethod
    def from_kind(cls, kind: str) -> CheckpointFormat:
        for fmt in cls:
            if fmt.kind == kind:
                return fmt
        raise ValueError(f"no checkpoint format {kind!r}")


# quant_method in config.json -> format; other methods (bitsandbytes, fp8, ...) are
# read by Transformers itself and count as plain safetensors.
_QUANT_METHODS = {"gptq": CheckpointFormat.GPTQ, "exl2": CheckpointFormat.EXL2, "awq": CheckpointFormat.AWQ}


def is_pickle_weights(name: str) -> bool:
    """A pickle weight file (training_args.bin is a pickle too, but no weights)."""
    return name.endswith(PICKLE_SUFFIXES) and not name.startswith("training_args")


def quant_method(config: Mapping[str, Any] | None) -> str:
    q = config.get("quantization_config") if config else None
    return str(q.get("quant_method") or "").lower() if isinstance(q, Mapping) else ""


def classify(file_names: Iterable[str], config: Mapping[str, Any] | None = None, *,
             tensor_names: Iterable[str] = (), name: str = "") -> CheckpointFormat | None:
    """The format of the checkpoint whose files are `file_names` (one folder's, or one
    file's), or None when nothing in them says.

    `config` is config.json as read, or None where it is not known (not fetched yet
    from the Hub, or missing); only then does `name`, the folder's or the repo's name,
    count as a hint. `tensor_names` are those of a safetensors header, where read."""
    names = {PurePosixPath(n).name for n in file_names}
    method = quant_method(config)
    if method in _QUANT_METHODS:
        return _QUANT_METHODS[method]
    if any(t.endswith(EXL2_TENSOR_SUFFIXES) for t in tensor_names):
        return CheckpointFormat.EXL2
    if config is None:
        hinted = _hinted_format(names, name.lower())
        if hinted is not None:
            return hinted
    if "quantize_config.json" in names:
        return CheckpointFormat.GPTQ
    if "measurement.json" in names:
        return CheckpointFormat.EXL2
    if "quant_config.json" in names:
        return CheckpointFormat.AWQ
    if any(n.endswith(".safetensors") for n in names):
        return CheckpointFormat.SAFETENSORS
    if any(is_pickle_weights(n) for n in names):
        return CheckpointFormat.PICKLE
    if any(n.lower().endswith(".gguf") for n in names):
        return CheckpointFormat.GGUF
    return None


def _hinted_format(names: set[str], hint: str) -> CheckpointFormat | None:
    """Without config.json, quantizers' files and the name: TheBloke-style repo names
    ("...-GPTQ", "...-AWQ") and ExLlamaV2 branches ("4.0bpw") say what they hold."""
    if "quantize_config.json" in names or "gptq" in hint:
        return CheckpointFormat.AWQ if "awq" in hint else CheckpointFormat.GPTQ
    if "measurement.json" in names or "exl2" in hint or _BPW.search(hint):
        return CheckpointFormat.EXL2
    if "awq" in hint or "quant_config.json" in names:
        return CheckpointFormat.AWQ
    return None
