"""Texts into vectors: the built-in all-MiniLM-L6-v2 (ONNX Runtime where installed),
or the loaded model when it is an embedding model (a GGUF BERT through llama.cpp).
/v1/embeddings and the documents extension both call this one service, so both use
the same encoder.

Which model: the name the request gives; without one, the loaded model if it embeds,
else the built-in. Every input a user can get wrong is a one-line UserError.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loaders import minilm
from loaders.base import TextEmbeddings
from loaders.gguf_embedder import LlamaEmbedder, minilm_gguf
from loaders.minilm_onnx import OnnxMiniLM
from webui.errors import ErrorKind, UserError
from webui.runtime.model_manager import ModelManager

if TYPE_CHECKING:  # NumPy is imported where it is used: `hearth --help` never pays for it
    import numpy as np

log = logging.getLogger(__name__)

BUILTIN = minilm.NAME
# Names a client may use for the built-in (OpenAI clients often send the Hub's id).
BUILTIN_ALIASES = {BUILTIN.lower(), "sentence-transformers/" + BUILTIN.lower()}
# OpenAI's own limit on inputs per request; each input is cut at the model's context
# anyway (256 tokens for MiniLM), so the character bound only stops huge bodies early.
MAX_INPUTS = 2048
MAX_TOTAL_CHARS = 4_000_000


@dataclass(frozen=True)
class EmbeddingResult:
    model: str
    vectors: np.ndarray  # (inputs, dimensions) float32, each row of length 1
    prompt_tokens: int


class Embeddings:
    def __init__(self, models: ModelManager, threads: int = 0):
        """`threads`: the built-in encoder's (0 = all usable CPUs)."""
        self._models = models
        self._threads = threads
        self._builtin: TextEmbeddings | None = None
        self._builtin_lock = threading.Lock()

    def builtin(self) -> TextEmbeddings:
        """The built-in encoder, loaded on first use and kept, the fastest that can run
        here (bench/embeddings.py): ONNX Runtime on a graph built once from the weights,
        else llama.cpp's embedding mode on the model's GGUF (converted once), else the
        NumPy encoder. Their vectors agree to cosine 0.99999."""
        with self._builtin_lock:
            if self._builtin is None:
                try:
                    minilm.bundled_model_dir()  # a one-line install hint when it is missing
                    self._builtin = self._onnx_builtin() or self._gguf_builtin() or minilm.MiniLMEmbedder()
                except RuntimeError as e:
                    raise UserError(str(e), kind=ErrorKind.UNAVAILABLE) from None
            return self._builtin

    def _onnx_builtin(self) -> TextEmbeddings | None:
        try:
            return OnnxMiniLM.open(self._threads)
        except (RuntimeError, OSError, ValueError) as e:  # a bad cached graph: the other encoders still work
            log.warning("%s: ONNX Runtime could not run it (%s); trying llama.cpp", BUILTIN, e)
            return None

    def _gguf_builtin(self) -> TextEmbeddings | None:
        path = minilm_gguf()
        if path is None:
            return None
        try:
            return LlamaEmbedder.open(path, threads=self._threads, max_tokens=minilm.MAX_TOKENS)
        except (ValueError, RuntimeError, OSError) as e:  # a bad cached file: the NumPy encoder still works
            log.warning("%s: llama.cpp could not open %s (%s); using the NumPy encoder", BUILTIN, path, e)
            return None

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """The built-in model's unit vectors for `texts` (what the documents extension
        stores; a library's vectors must not change model when another is loaded)."""
        return self.builtin().embed(list(texts))

    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]], model: str | None = None,
              dimensions: int | None = None) -> EmbeddingResult:
        _check_inputs(inputs)
        loaded = self._models.current
        name = (model or "").strip()
        if name.lower() in BUILTIN_ALIASES or (not name and not _embeds(loaded)):
            result = self._run(self.builtin(), BUILTIN, inputs)
        elif loaded is not None and name in ("", loaded.name):
            if not _embeds(loaded):
                raise UserError(f"{loaded.name} cannot embed: it is a text-generation model; use "
                                f"model {BUILTIN}, or load a GGUF embedding model", kind=ErrorKind.INVALID)
            with self._models.use() as current:  # drives its context: not beside a reply
                if current is not loaded:
                    raise UserError(f"{name} was unloaded meanwhile", kind=ErrorKind.CONFLICT)
                result = self._run(current.model, current.name, inputs)
        else:
            raise UserError(f"no embedding model named {name!r}: use {BUILTIN}, or the loaded model "
                            "when it is a GGUF embedding model", kind=ErrorKind.NOT_FOUND)
        return _shorten(result, dimensions)

    @staticmethod
    def _run(encoder: TextEmbeddings, name: str, inputs) -> EmbeddingResult:
        if isinstance(inputs[0], str):
            texts = list(inputs)
            return EmbeddingResult(name, encoder.embed(texts), encoder.count_tokens(texts))
        sequences = [list(s) for s in inputs]
        for s in sequences:
            bad = next((t for t in s if not 0 <= t < encoder.vocab_size), None)
            if bad is not None:
                raise UserError(f"token id {bad} is not in {name}'s vocabulary (0..{encoder.vocab_size - 1})",
                                kind=ErrorKind.INVALID)
            if len(s) > encoder.max_tokens:
                raise UserError(f"an input of {len(s)} tokens is longer than {name}'s {encoder.max_tokens}",
                                kind=ErrorKind.TOO_LARGE)
        return EmbeddingResult(name, encoder.embed_ids(sequences), sum(len(s) for s in sequences))


def _embeds(loaded) -> bool:
    return loaded is not None and isinstance(loaded.model, TextEmbeddings) and loaded.model.can_embed


def _check_inputs(inputs) -> None:
    if not inputs:
        raise UserError("input is empty: give a text, a list of texts, or token ids", kind=ErrorKind.INVALID)
    if len(inputs) > MAX_INPUTS:
        raise UserError(f"{len(inputs)} inputs in one request; at most {MAX_INPUTS}", kind=ErrorKind.TOO_LARGE)
    if isinstance(inputs[0], str):
        if not all(isinstance(t, str) for t in inputs):
            raise UserError("input mixes texts and token ids", kind=ErrorKind.INVALID)
        if any(not t for t in inputs):
            raise UserError("an input text is empty", kind=ErrorKind.INVALID)
        total = sum(len(t) for t in inputs)
        if total > MAX_TOTAL_CHARS:
            raise UserError(f"inputs of {total} characters in all; at most {MAX_TOTAL_CHARS}",
                            kind=ErrorKind.TOO_LARGE)
    elif any(not s for s in inputs):
        raise UserError("an input has no tokens", kind=ErrorKind.INVALID)


def _shorten(result: EmbeddingResult, dimensions: int | None) -> EmbeddingResult:
    """OpenAI's `dimensions`: the first n components, made unit length again."""
    import numpy as np
    full = result.vectors.shape[1]
    if dimensions is None or dimensions == full:
        return result
    if not 1 <= dimensions <= full:
        raise UserError(f"dimensions={dimensions}: {result.model} gives 1 to {full}", kind=ErrorKind.INVALID)
    cut = result.vectors[:, :dimensions]
    cut = cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
    return EmbeddingResult(result.model, cut.astype(np.float32), result.prompt_tokens)
