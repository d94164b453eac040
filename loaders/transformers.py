"""Unquantized Hugging Face checkpoints (a folder with config.json and .safetensors)
through Transformers' AutoModelForCausalLM, in float32, float16 or bfloat16, on the CPU
or a CUDA GPU.

Safe by default: only .safetensors weights load (pickle files can run code when read)
and a model's own Python code (auto_map) never runs unless the user turns on
trust_remote_code. torch and transformers are imported inside `load`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loaders.base import LoadError
from loaders.fields import setting
from loaders.formats import CheckpointFormat
from loaders.hf_common import (
    TRUST_REMOTE_CODE_HELP,
    check_remote_code,
    check_safetensors,
    context_length,
    missing_library,
    model_format,
    one_line,
    read_chat_template,
    read_config,
    require_format,
    resolve_device,
    weight_files,
)
from loaders.hf_model import SAMPLERS, HFModel, set_cpu_threads
from loaders.load_progress import LoadProgress, no_progress, transformers_weight_progress
from loaders.lora import PEFT_LORA_HELP, lora_setting, parse_entries, peft_adapter_folder
from loaders.lora_peft import PeftAdapters
from loaders.option_limits import MAX_THREADS
from loaders.registry import register

ALLOW_PICKLE_HELP = (
    "Also load .bin/.pt weights. They are Python pickle files, which can run code when "
    "read; turn this on only for a model from a source you trust. Off, only .safetensors loads.")

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class TransformersOptions:
    dtype: str = setting("auto", "Weight precision: auto keeps the checkpoint's own; bfloat16 and float16 halve the memory of float32.", choices=("auto", "float32", "float16", "bfloat16"))
    device: str = setting("auto", "Where the model runs: auto picks a CUDA GPU if there is one, else the CPU.", choices=("auto", "cpu", "cuda"))
    cpu_threads: int = setting(0, "CPU threads for PyTorch (0 = all CPUs but one, which the UI and browser need).", minimum=0, maximum=MAX_THREADS, ui_maximum=256, step=1)
    attn_implementation: str = setting("auto", "Attention kernel: auto lets Transformers choose (sdpa); eager is the plain reference; flash_attention_2 needs the flash-attn package and a GPU.", choices=("auto", "sdpa", "eager", "flash_attention_2"), advanced=True)
    trust_remote_code: bool = setting(False, TRUST_REMOTE_CODE_HELP)
    allow_pickle: bool = setting(False, ALLOW_PICKLE_HELP, advanced=True)
    lora: tuple[str, ...] = lora_setting(PEFT_LORA_HELP)


def check_weights(folder: Path, allow_pickle: bool) -> list[Path]:
    """The weight files to load; refuses pickle-only folders unless allowed."""
    safetensors, pickles = weight_files(folder)
    if safetensors:
        check_safetensors(safetensors)
        return safetensors
    if pickles and not allow_pickle:
        names = ", ".join(p.name for p in pickles[:3]) + (", ..." if len(pickles) > 3 else "")
        raise LoadError(
            f"{folder.name} has only pickle weights ({names}), which can run code when loaded, so Hearth "
            f"loads .safetensors only: convert them to safetensors, or turn on allow_pickle if you trust "
            f"their source")
    if not pickles:
        raise LoadError(f"{folder.name} has no weight files (.safetensors)")
    return pickles


def check_memory(files: list[Path], config: dict, dtype: str, device: str) -> None:
    if device != "cpu":
        return
    try:
        import psutil
    except ImportError:
        return
    size = sum(f.stat().st_size for f in files)
    saved = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    if dtype in _DTYPE_BYTES and saved in _DTYPE_BYTES:
        size = size * _DTYPE_BYTES[dtype] // _DTYPE_BYTES[saved]
    available = psutil.virtual_memory().available
    if size > available:
        gib = 1 << 30
        raise LoadError(f"the weights need about {size / gib:.1f} GiB of RAM in {dtype}, but only "
                        f"{available / gib:.1f} GiB is free; try dtype=bfloat16, or a GGUF quantization")


@register
class TransformersLoader:
    name = "Transformers"
    Options = TransformersOptions
    description = ("Unquantized Hugging Face folders (config.json + .safetensors) via Transformers, "
                   "in float32/float16/bfloat16 on CPU or CUDA.")
    # Pickle-only folders load once allowed (allow_pickle); AWQ ones through
    # Transformers' own quantizer integration.
    formats = (CheckpointFormat.SAFETENSORS, CheckpointFormat.PICKLE, CheckpointFormat.AWQ)
    samplers = (SAMPLERS,)

    def can_load(self, path: Path) -> bool:
        return model_format(path) in self.formats

    def load(self, path: Path, options: TransformersOptions, progress: LoadProgress = no_progress) -> HFModel:
        folder = require_format(path, self.name, self.formats)
        config = read_config(folder)
        files = check_weights(folder, options.allow_pickle)
        adapters = parse_entries(options.lora)
        for adapter in adapters:  # the kind of each before the model is read; shapes once it is
            peft_adapter_folder(adapter.path)
        try:
            import torch
            import transformers
        except ImportError:
            raise missing_library("Transformers and PyTorch", "transformers") from None
        check_remote_code(folder, config, options.trust_remote_code)
        device = resolve_device(torch, options.device)
        check_memory(files, config, options.dtype, device)
        set_cpu_threads(torch, options.cpu_threads)
        dtype = "auto" if options.dtype == "auto" else getattr(torch, options.dtype)
        attn = None if options.attn_implementation == "auto" else options.attn_implementation
        use_safetensors = files[0].suffix == ".safetensors"
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                folder, trust_remote_code=options.trust_remote_code, local_files_only=True)
            with transformers_weight_progress(progress):
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    folder, dtype=dtype, device_map=device, attn_implementation=attn,
                    trust_remote_code=options.trust_remote_code, use_safetensors=use_safetensors,
                    local_files_only=True)
        except MemoryError:
            raise
        except Exception as e:  # Transformers raises many kinds; the user needs one line
            raise LoadError(f"Transformers could not load {folder.name}: {one_line(e)}") from None
        model.eval()
        loaded = HFModel(model, tokenizer, chat_template=read_chat_template(folder) or tokenizer.chat_template,
                         context_length=context_length(config), lora=PeftAdapters(model))
        try:
            loaded.set_adapters(adapters)
        except BaseException:
            loaded.unload()
            raise
        return loaded
