"""FAISS index over ticket embeddings, keyed by ticket id, persisted by atomic file replace.

The index type follows the size: exact inner-product search while small, IVF (inverted lists) when
large. Both support ``add_with_ids`` and ``remove_ids``, so ingest and delete never rebuild the index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.errors import CsbotError

INDEX_FILE = "tickets.faiss"
META_FILE = "meta.json"


def choose_spec(n_vectors: int) -> str:
    """FAISS factory string for a collection of ``n_vectors``: exact below 200k, IVF above."""
    if n_vectors < 200_000:
        return "IDMap2,Flat"
    # sqrt(N) lists: ~1,000 vectors a list at 1M, so nprobe=16 scans ~16k codes a query; k-means on
    # 64 x nlist samples trains in seconds on two cores (4*sqrt(N) lists would take minutes).
    nlist = int(np.sqrt(n_vectors))
    return f"IVF{nlist},SQ8"


def set_search_threads(count: int) -> None:
    """OpenMP threads for FAISS searches started from the calling thread (OpenMP keeps the setting per thread)."""
    faiss.omp_set_num_threads(count)


class TicketIndex:
    """A FAISS index whose ids are ticket ids.

    Example:
        >>> index = TicketIndex.build(vectors, ids, encoder_name="all-MiniLM-L6-v2")   # doctest: +SKIP
        >>> ids, scores = index.search(query_vectors, k=10)                            # doctest: +SKIP
    """

    def __init__(self, index: faiss.Index, meta: dict[str, Any]) -> None:
        self.index = index
        self.meta = meta

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, *, encoder_name: str, spec: str = "auto", nprobe: int = 16) -> TicketIndex:
        dim = vectors.shape[1]
        spec = choose_spec(len(ids)) if spec == "auto" else spec
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            nlist = faiss.extract_index_ivf(index).nlist if "IVF" in spec else 256
            sample = vectors[np.random.default_rng(0).permutation(len(vectors))[: 64 * nlist]]
            index.train(sample)
        if "IVF" in spec:
            faiss.extract_index_ivf(index).nprobe = nprobe
        meta = {"encoder": encoder_name, "dim": dim, "spec": spec, "nprobe": nprobe, "max_id": -1}
        self = cls(index, meta)
        self.add(vectors, ids)
        return self

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        self.meta["max_id"] = max(int(self.meta.get("max_id", -1)), int(np.max(ids)))

    def remove(self, ids: list[int]) -> int:
        return int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ticket ids and inner-product scores per query row (id -1 where fewer exist)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, found {k}")
        scores, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return ids, scores

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (INDEX_FILE + ".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, directory / INDEX_FILE)
        self.meta["count"] = self.size
        tmp_meta = directory / (META_FILE + ".tmp")
        tmp_meta.write_text(json.dumps(self.meta, indent=2))
        os.replace(tmp_meta, directory / META_FILE)

    @classmethod
    def load(cls, directory: Path, *, encoder_name: str) -> TicketIndex | None:
        """The saved index, or None if there is none. Raises if it was built with another encoder."""
        if not (directory / INDEX_FILE).exists() or not (directory / META_FILE).exists():
            return None
        try:
            meta = json.loads((directory / META_FILE).read_text())
            index = faiss.read_index(str(directory / INDEX_FILE))
        except (OSError, ValueError, RuntimeError) as err:
            raise CsbotError(f"the ticket index in {directory} is unreadable ({err}); delete it and restart to rebuild") from err
        if meta.get("encoder") != encoder_name:
            raise CsbotError(
                f"the ticket index in {directory} was built with encoder {meta.get('encoder')!r}, "
                f"but serving uses {encoder_name!r}; delete the folder to rebuild it"
            )
        if "IVF" in meta.get("spec", ""):
            faiss.extract_index_ivf(index).nprobe = int(meta.get("nprobe", 16))
        return cls(index, meta)
