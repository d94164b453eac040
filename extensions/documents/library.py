"""The user's documents: passages and their embeddings, searchable by meaning.

Kept in the extension's data folder as two files, each written atomically:
`library.json` (documents and passages) and `embeddings.npy` (one row per passage,
in the same order). Only the text is kept, not the uploaded file.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .chunking import DocumentError, Passage, clean_name, read_sections, split_passages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # cosine similarity, -1..1


class DocumentLibrary:
    def __init__(self, folder: Path, embed: Callable[[list[str]], np.ndarray],
                 save: Callable[[str, bytes], None]):
        """`embed` turns texts into unit vectors; `save(name, data)` writes a file of
        the folder atomically (the extension context's save_file)."""
        self.folder = Path(folder)
        self._embed = embed
        self._save = save
        self._lock = threading.Lock()
        self.documents: dict[str, str] = {}  # name -> sha256 of the text
        self.passages: list[Passage] = []
        self.vectors = np.zeros((0, 0), np.float32)
        self._load()

    # --- persistence ----------------------------------------------------------------
    def _load(self) -> None:
        meta_path, vec_path = self.folder / "library.json", self.folder / "embeddings.npy"
        if not meta_path.exists():
            return
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            vectors = np.load(vec_path, allow_pickle=False)
            passages = [Passage(p["source"], p["where"], p["text"]) for p in meta["passages"]]
            if len(passages) != len(vectors):
                raise ValueError(f"{len(passages)} passages but {len(vectors)} embeddings")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("documents: ignoring a damaged library in %s: %s", self.folder, e)
            return
        self.documents = dict(meta.get("documents", {}))
        self.passages = passages
        self.vectors = vectors.astype(np.float32)

    def _write(self) -> None:
        buffer = io.BytesIO()
        np.save(buffer, self.vectors, allow_pickle=False)
        # Embeddings first: a crash between the two writes leaves a count mismatch,
        # which _load notices, rather than passages pointing at the wrong vectors.
        self._save("embeddings.npy", buffer.getvalue())
        meta = {"documents": self.documents,
                "passages": [{"source": p.source, "where": p.where, "text": p.text} for p in self.passages]}
        self._save("library.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))

    # --- changes --------------------------------------------------------------------
    def add_file(self, path: Path, name: str | None = None) -> int:
        """Read, cut and embed one file; returns its number of passages. A file with
        the same name replaces the old one. Raises DocumentError."""
        name = clean_name(name or Path(path).name)
        sections = read_sections(Path(path), name)
        passages = split_passages(sections, name)
        if not passages:
            raise DocumentError(f"{name} has no text to read (a scanned PDF has only pictures)")
        digest = hashlib.sha256("\n".join(p.text for p in passages).encode("utf-8")).hexdigest()
        vectors = self._embed([p.text for p in passages])
        with self._lock:
            self._remove_locked(name)
            self.passages.extend(passages)
            self.vectors = vectors if self.vectors.size == 0 else np.concatenate([self.vectors, vectors])
            self.documents[name] = digest
            self._write()
        return len(passages)

    def remove(self, name: str) -> bool:
        with self._lock:
            found = self._remove_locked(name)
            if found:
                self._write()
            return found

    def _remove_locked(self, name: str) -> bool:
        if name not in self.documents:
            return False
        keep = [i for i, p in enumerate(self.passages) if p.source != name]
        self.passages = [self.passages[i] for i in keep]
        self.vectors = self.vectors[keep] if keep else np.zeros((0, 0), np.float32)
        del self.documents[name]
        return True

    # --- search ---------------------------------------------------------------------
    def summary(self) -> list[tuple[str, int]]:
        with self._lock:
            counts: dict[str, int] = dict.fromkeys(self.documents, 0)
            for p in self.passages:
                counts[p.source] = counts.get(p.source, 0) + 1
            return sorted(counts.items())

    def search(self, query: str, k: int = 3, min_score: float = 0.0) -> list[Hit]:
        """The k passages closest in meaning to `query`, best first."""
        with self._lock:
            passages, vectors = list(self.passages), self.vectors
        if not passages or not query.strip():
            return []
        q = self._embed([query])[0]
        scores = vectors @ q
        best = np.argsort(-scores)[:k]
        return [Hit(passages[i], float(scores[i])) for i in best if scores[i] >= min_score]
