"""GPTQ checkpoints through GPTQModel (the maintained successor of AutoGPTQ, which reads
the same format): its torch kernel on the CPU, its CUDA kernels where there is a GPU.

A folder is GPTQ when config.json's quantization_config says quant_method "gptq", or
when it has an AutoGPTQ-style quantize_config.json. Generation is the wrapped
Transformers model's own, through the same streaming loop as the Transformers loader.
torch and gptqmodel are imported inside `load`.
"""
from __future__ import annotations

import os
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
from loaders.load_progress import LoadProgress, no_progress
from loaders.option_limits import MAX_THREADS
from loaders.registry import register


@dataclass(frozen=True)
class GPTQOptions:
    device: str = setting("auto", "Where the model runs: auto picks a CUDA GPU if there is one, else the CPU.", choices=("auto", "cpu", "cuda"))
    cpu_threads: int = setting(0, "CPU threads for PyTorch (0 = all CPUs but one, which the UI and browser need).", minimum=0, maximum=MAX_THREADS, ui_maximum=256, step=1)
    backend: str = setting("auto", "GPTQModel kernel: auto picks the fastest that fits the device and checkpoint; gptq_torch runs anywhere; marlin, exllama_v2 and triton need a CUDA GPU.", choices=("auto", "gptq_torch", "gptq_marlin", "gptq_exllama_v2", "gptq_triton"), advanced=True)
    trust_remote_code: bool = setting(False, TRUST_REMOTE_CODE_HELP)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@register
class GPTQLoader:
    name = "GPTQ"
    Options = GPTQOptions
    description = "GPTQ-quantized folders (4/8-bit) via GPTQModel, on CPU (torch kernel) or CUDA."
    formats = (CheckpointFormat.GPTQ,)
    samplers = (SAMPLERS,)  # generation is the wrapped Transformers model's

    def can_load(self, path: Path) -> bool:
        return model_format(path) in self.formats

    def load(self, path: Path, options: GPTQOptions, progress: LoadProgress = no_progress) -> HFModel:
        # GPTQModel shows no progress it can be asked for: the caller reports start and end.
        folder = require_format(path, self.name, self.formats)
        config = read_config(folder)
        safetensors, _ = weight_files(folder)
        if not safetensors:
            raise LoadError(f"{folder.name} has no .safetensors weights; Hearth does not load pickle "
                            f"(.bin) GPTQ checkpoints")
        check_safetensors(safetensors)
        # GPTQModel's device thread pool gives the CPU (cores + 1) // 2 workers but a
        # "model_loader:cpu" sub-pool a fixed 2, and refuses to start when the sub-pool
        # is larger ("requests 2 workers but parent 'cpu' only has 1" on 2 cores).
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, _cpu_count())))
        try:
            import torch
            from transformers import AutoTokenizer
        except ImportError:
            raise missing_library("PyTorch and Transformers", "gptq") from None
        try:
            from gptqmodel import GPTQModel
        except ImportError:
            raise missing_library("GPTQModel", "gptq") from None
        check_remote_code(folder, config, options.trust_remote_code)
        device = resolve_device(torch, options.device)
        set_cpu_threads(torch, options.cpu_threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                folder, trust_remote_code=options.trust_remote_code, local_files_only=True)
            wrapper = GPTQModel.load(str(folder), device=device, backend=options.backend,
                                     trust_remote_code=options.trust_remote_code)
        except MemoryError:
            raise
        except Exception as e:  # GPTQModel raises many kinds; the user needs one line
            raise LoadError(f"GPTQModel could not load {folder.name}: {one_line(e)}") from None
        model = wrapper.model
        model.eval()
        holder = [wrapper]  # the wrapper owns the kernels' buffers; drop it on unload
        return HFModel(model, tokenizer, chat_template=read_chat_template(folder) or tokenizer.chat_template,
                       context_length=context_length(config), on_unload=holder.clear)
