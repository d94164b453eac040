"""Sentence embeddings through llama.cpp's own embedding mode: a GGUF encoder (BERT and
kin) loaded with embeddings on and mean pooling, rows made unit length, as
sentence-transformers does. Also how the built-in all-MiniLM-L6-v2 runs when its
GGUF can be made: `minilm_gguf` converts the wheel's safetensors once with the
vendored llama.cpp's convert_hf_to_gguf.py and caches the file.

`llama_cpp` is imported inside the functions that need it.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from loaders import minilm
from loaders.base import GenerationError, LoadError
from loaders.option_limits import usable_cpus

if TYPE_CHECKING:  # NumPy is imported where it is used: `hearth --help` never pays for it
    import numpy as np

log = logging.getLogger(__name__)

# Sequences packed into one llama.cpp batch: llama.cpp attends over the whole
# ubatch behind a mask. Without flash attention a large batch of short texts wastes
# work quadratically; with it, masked-out blocks are skipped and only the mask is
# read: one thread, 32 passages of ~106 tokens, 31.8 ms/passage packed 256, 32.5
# at 512, 33.4 one passage per batch.
BATCH_TOKENS = 512
# Flash attention: llama.cpp's CPU kernel skips the other sequences' masked keys
# that the plain path multiplies and softmaxes. Measured on one thread, same run:
# 103 ms/passage without, 39 with (vectors equal to cosine 1.000000).
FLASH_ATTENTION = True
MAX_SEQUENCES = 64
CONVERT_TIMEOUT_S = 300
# GGUF architectures that are encoders: llama.cpp loads them for embeddings, not text.
ENCODER_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert",
                                   "neo-bert"})
LLAMA_CPP_SOURCE_VERSION = "0.3.36"


class LlamaEmbedder:
    """The TextEmbeddings capability (loaders/base.py) over a llama_cpp.Llama made with
    embedding=True. Not thread-safe by itself: one call at a time (a lock here)."""

    can_embed = True

    def __init__(self, llm, max_tokens: int = 0):
        self._llm = llm
        self.dimensions = llm.n_embd()
        self.vocab_size = llm.n_vocab()
        self.max_tokens = min(llm.n_ctx(), llm.n_batch, llm._model.n_ctx_train() or llm.n_ctx(),
                              max_tokens or llm.n_batch)
        self._batch_tokens = llm.n_batch
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, threads: int = 0, max_tokens: int = 0) -> LlamaEmbedder:
        """`max_tokens` cuts longer texts (0 = the model's trained context)."""
        import llama_cpp

        llm = llama_cpp.Llama(model_path=str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                              n_ctx=BATCH_TOKENS, n_batch=BATCH_TOKENS, n_ubatch=BATCH_TOKENS,
                              n_seq_max=MAX_SEQUENCES, n_threads=threads or usable_cpus(),
                              n_threads_batch=threads or usable_cpus(), flash_attn=FLASH_ATTENTION, verbose=False)
        return cls(llm, max_tokens)

    def tokenize(self, text: str) -> list[int]:
        """[CLS] text [SEP] for a BERT vocabulary, cut at max_tokens (the [SEP] kept)."""
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) > self.max_tokens:
            ids = ids[: self.max_tokens - 1] + ids[-1:]
        return ids

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(self.tokenize(t)) for t in texts)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_ids([self.tokenize(t) for t in texts])

    def embed_ids(self, sequences: list[list[int]]) -> np.ndarray:
        """(len(sequences), dimensions) float32, each row of length 1."""
        import llama_cpp
        import numpy as np

        out = np.zeros((len(sequences), self.dimensions), np.float32)
        llm = self._llm
        with self._lock:
            start = 0
            while start < len(sequences):
                # Pack whole sequences into one batch (each is at most max_tokens).
                end, used = start, 0
                while end < len(sequences) and end - start < MAX_SEQUENCES and \
                        used + len(sequences[end]) <= self._batch_tokens:
                    used += len(sequences[end])
                    end += 1
                llm._batch.reset()
                for seq, ids in enumerate(sequences[start:end]):
                    llm._batch.add_sequence(ids, seq, True)  # outputs on: llama.cpp pools every token
                llm._ctx.kv_cache_clear()
                llm._ctx.decode(llm._batch)
                for seq in range(end - start):
                    pointer = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, seq)
                    out[start + seq] = np.ctypeslib.as_array(pointer, shape=(self.dimensions,))
                start = end
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


class EmbeddingModel(LlamaEmbedder):
    """A GGUF encoder loaded as Hearth's model (llama.cpp loader): it embeds
    (/v1/embeddings under its name) and refuses to generate, in one line."""

    chat_template = None
    supported_params: frozenset[str] = frozenset()
    last_prompt_eval_tokens = 0
    special_tokens: dict = {}

    def __init__(self, llm, name: str, architecture: str):
        super().__init__(llm)
        self.context_length = self.max_tokens
        self.name = name
        self.architecture = architecture

    @classmethod
    def load(cls, path: Path, architecture: str, n_ctx: int, threads: int) -> EmbeddingModel:
        import llama_cpp

        try:
            llm = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                                  n_seq_max=MAX_SEQUENCES, n_threads=threads, n_threads_batch=threads,
                                  flash_attn=FLASH_ATTENTION, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise LoadError(f"llama.cpp could not load {path.name} as an embedding model: {e}") from None
        return cls(llm, path.name, architecture)

    def encode(self, text: str) -> list[int]:
        return self.tokenize(text)

    def decode(self, ids) -> str:
        return self._llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def generate(self, prompt_ids, params, cancel):
        raise GenerationError(f"{self.name} is an embedding model ({self.architecture}): it cannot generate "
                              "text; use it through /v1/embeddings, or load a text-generation model")

    def unload(self) -> None:
        self.close()


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth"


def minilm_gguf() -> Path | None:
    """The built-in MiniLM as an f32 GGUF (f32: its vectors match the NumPy encoder's
    to cosine 0.9999999; f16 gave 0.9999997 and was no faster on a CPU), converted
    on first use and cached; None when it cannot be made here (no llama.cpp sources,
    which scripts/setup.sh unpacks, or no PyTorch, which the converter imports)."""
    target = cache_dir() / "embeddings" / f"{minilm.NAME}-f32.gguf"
    if target.is_file():
        return target
    converter = cache_dir() / "src" / f"llama_cpp_python-{LLAMA_CPP_SOURCE_VERSION}" / "vendor" / "llama.cpp" / \
        "convert_hf_to_gguf.py"
    if not converter.is_file():
        return None
    try:
        source = minilm.bundled_model_dir()
    except RuntimeError:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        done = subprocess.run([sys.executable, str(converter), str(source), "--outtype", "f32",
                               "--outfile", str(partial)], capture_output=True, text=True,
                              timeout=CONVERT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not convert %s to GGUF: %s", minilm.NAME, e)
        partial.unlink(missing_ok=True)
        return None
    if done.returncode != 0 or not partial.is_file():
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        log.warning("could not convert %s to GGUF: %s", minilm.NAME, tail[0])
        partial.unlink(missing_ok=True)
        return None
    os.replace(partial, target)
    return target
